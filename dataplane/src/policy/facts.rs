//! What expressions and actions read and edit: [`View`] over the parsed heads and the
//! connection (strings borrowed, never copied), and one [`Exchange`] per phase.

use innergate_table::policy::actions::{Exchange, HeadersMut};
use innergate_table::policy::expr::{IpVar, MapVar, Var};
use innergate_table::policy::results::{ActionResults, Results};
use innergate_table::policy::{ActionId, Facts};

use super::state::{ConnInfo, Vars};
use super::RequestInfo;
use crate::error::ProxyError;
use crate::http::head::{HeaderBlock, RequestHead, ResponseHead};
use crate::ipintel::IpFacts;
use crate::ratelimit::now_ms;
use crate::routes::{EndpointIdx, Route};

/// Everything a fact can come from, borrowed for one lookup.
#[derive(Clone, Copy)]
pub(crate) struct View<'s> {
    pub(crate) req: &'s RequestHead,
    pub(crate) resp: Option<&'s ResponseHead>,
    pub(crate) info: RequestInfo<'s>,
    pub(crate) route: &'s Route,
    pub(crate) vars: &'s Vars,
    pub(crate) results: &'s Results,
    pub(crate) forward_error: Option<ProxyError>,
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn header_values<'s, 'k>(
    block: &'s HeaderBlock,
    key: &'k str,
) -> impl Iterator<Item = &'s str> + use<'s, 'k> {
    block.get_all(key).map(text)
}

fn query_values<'s, 'k>(
    query: &'s str,
    key: &'k str,
) -> impl Iterator<Item = &'s str> + use<'s, 'k> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
}

impl<'s> View<'s> {
    fn path_and_query(self) -> (&'s str, &'s str) {
        let target = text(self.req.target());
        target.split_once('?').unwrap_or((target, ""))
    }

    fn string(self, var: Var) -> &'s str {
        match var {
            Var::Method => text(self.req.method()),
            Var::Scheme => self.info.scheme,
            Var::Host => self.info.host,
            Var::Path => self.path_and_query().0,
            Var::Query => self.path_and_query().1,
            Var::Version => {
                if self.req.minor_version == 0 {
                    "1.0"
                } else {
                    "1.1"
                }
            }
            Var::Authority => self.request_header("host"),
            Var::UserAgent => self.request_header("user-agent"),
            Var::ReqContentTypeRaw => self.request_header("content-type"),
            Var::ReqLocation => self.request_header("location"),
            Var::ResContentTypeRaw => self.response_header("content-type"),
            Var::ResLocation => self.response_header("location"),
            _ => connection_string(self.info.conn, self.route, self.forward_error, var),
        }
    }

    /// The first value of a request header; "" without one.
    fn request_header(self, name: &str) -> &'s str {
        self.req.headers.get_all(name).next().map_or("", text)
    }

    fn response_header(self, name: &str) -> &'s str {
        self.resp
            .and_then(|r| r.headers.get_all(name).next())
            .map_or("", text)
    }

    fn int(self, var: Var) -> i64 {
        match var {
            Var::ContentLength => self.info.content_length,
            Var::StatusCode => self.resp.map_or(0, |r| i64::from(r.status)),
            Var::ResContentLength => self
                .response_header("content-length")
                .trim()
                .parse()
                .unwrap_or(-1),
            _ => connection_int(self.info.conn, self.route, var),
        }
    }

    fn count(self, map: MapVar, key: &str) -> usize {
        match map {
            MapVar::RequestHeaders => self.req.headers.get_all(key).count(),
            MapVar::ResponseHeaders => self.resp.map_or(0, |r| r.headers.get_all(key).count()),
            MapVar::QueryParams => query_values(self.path_and_query().1, key).count(),
        }
    }

    fn value(self, map: MapVar, key: &str, index: usize) -> Option<&'s str> {
        match map {
            MapVar::RequestHeaders => header_values(&self.req.headers, key).nth(index),
            MapVar::ResponseHeaders => self
                .resp
                .and_then(|r| header_values(&r.headers, key).nth(index)),
            MapVar::QueryParams => query_values(self.path_and_query().1, key).nth(index),
        }
    }

    fn map_size(self, map: MapVar) -> usize {
        match map {
            MapVar::RequestHeaders => self.req.headers.iter().count(),
            MapVar::ResponseHeaders => self.resp.map_or(0, |r| r.headers.iter().count()),
            MapVar::QueryParams => self
                .path_and_query()
                .1
                .split('&')
                .filter(|p| !p.is_empty())
                .count(),
        }
    }

    fn keys(self, map: MapVar) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let mut push = |key: &str| {
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        };
        match map {
            MapVar::RequestHeaders => self
                .req
                .headers
                .iter()
                .for_each(|(name, _)| push(&text(name).to_ascii_lowercase())),
            MapVar::ResponseHeaders => {
                if let Some(r) = self.resp {
                    r.headers
                        .iter()
                        .for_each(|(name, _)| push(&text(name).to_ascii_lowercase()));
                }
            }
            MapVar::QueryParams => self
                .path_and_query()
                .1
                .split('&')
                .filter(|p| !p.is_empty())
                .for_each(|pair| push(pair.split_once('=').map_or(pair, |(k, _)| k))),
        }
        keys
    }

    fn user_var(self, name: &str) -> Option<&'s serde_json::Value> {
        self.vars.get(name)
    }

    fn results(self) -> &'s ActionResults {
        self.results.get()
    }
}

/// What every phase reads alike: the connection, the endpoint running the rule, and
/// the forward-internal error let through. Other string variables read as "".
fn connection_string<'s>(
    conn: &'s ConnInfo,
    route: &'s Route,
    forward_error: Option<ProxyError>,
    var: Var,
) -> &'s str {
    match var {
        Var::ClientIp => &conn.client_ip,
        Var::TlsSni => conn.sni.as_deref().unwrap_or(""),
        Var::Tls(tls) => conn.tls.as_ref().map_or("", |t| t.string(tls)),
        Var::EndpointId => &route.id,
        Var::EndpointUrl => &route.url_text,
        Var::EndpointHost => &route.host_text,
        Var::EndpointAddr => &route.addr_text,
        Var::EndpointProtocol => route.url.scheme.as_str(),
        Var::Ip(ip) => ip_string(conn.ip(), ip),
        Var::ForwardErrorCode => forward_error.map_or("", ProxyError::code),
        Var::ForwardErrorMessage => forward_error.map_or("", ProxyError::message),
        _ => "",
    }
}

/// The string facts of the client's address.
fn ip_string(facts: &IpFacts, var: IpVar) -> &str {
    let (l, r) = (&facts.location, &facts.registered_location);
    match var {
        IpVar::LocationCity => &l.city,
        IpVar::LocationContinent => &l.continent,
        IpVar::LocationCountry => &l.country,
        IpVar::LocationCountryCode => &l.country_code,
        IpVar::LocationLatitude => &l.latitude,
        IpVar::LocationLongitude => &l.longitude,
        IpVar::LocationMetroCode => &l.metro_code,
        IpVar::LocationPostalCode => &l.postal_code,
        IpVar::LocationRadius => &l.radius,
        IpVar::LocationSubdivision => &l.subdivision,
        IpVar::LocationTimezone => &l.timezone,
        IpVar::RegisteredCity => &r.city,
        IpVar::RegisteredContinent => &r.continent,
        IpVar::RegisteredCountry => &r.country,
        IpVar::RegisteredCountryCode => &r.country_code,
        IpVar::RegisteredMetroCode => &r.metro_code,
        IpVar::RegisteredSubdivision => &r.subdivision,
        IpVar::RegisteredTimezone => &r.timezone,
        IpVar::AsOrganization => &facts.autonomous_system.organization,
        _ => "",
    }
}

/// The bool facts of the connection: its TLS, the client's address.
fn connection_bool(conn: &ConnInfo, var: Var) -> bool {
    match var {
        Var::Tls(tls) => conn.tls.as_ref().is_some_and(|t| t.boolean(tls)),
        _ => ip_bool(conn.ip(), var),
    }
}

/// The list facts of the connection: its TLS, the client's address.
fn connection_list(conn: &ConnInfo, var: Var) -> &[String] {
    match var {
        Var::Tls(tls) => conn.tls.as_ref().map_or(&[], |t| t.list(tls)),
        _ => ip_list(conn.ip(), var),
    }
}

/// The bool facts of the client's address.
fn ip_bool(facts: &IpFacts, var: Var) -> bool {
    match var {
        Var::Ip(IpVar::LocationIsEu) => facts.location.is_eu,
        Var::Ip(IpVar::RegisteredIsEu) => facts.registered_location.is_eu,
        Var::Ip(IpVar::IsTorNode) => facts.is_tor_node,
        Var::Ip(IpVar::IsOnBlocklist) => facts.is_on_blocklist,
        _ => false,
    }
}

/// The list facts of the client's address.
fn ip_list(facts: &IpFacts, var: Var) -> &[String] {
    match var {
        Var::Ip(IpVar::Categories) => &facts.categories,
        _ => &[],
    }
}

/// The integer variables of the connection and its endpoint; others read as 0.
fn connection_int(conn: &ConnInfo, route: &Route, var: Var) -> i64 {
    match var {
        Var::ClientPort => i64::from(conn.client_port),
        Var::ServerPort => i64::from(conn.server_port),
        Var::EndpointPort => i64::from(route.url.port),
        Var::ConnTsStart => conn.started_ns,
        Var::Tls(tls) => conn.tls.as_ref().map_or(0, |t| t.int(tls)),
        Var::Ip(IpVar::AsNumber) => i64::from(conn.ip().autonomous_system.number),
        _ => 0,
    }
}

/// Facts through a value that can lend a [`View`]: each answer borrows from it.
macro_rules! facts_via_view {
    ($ty:ty) => {
        impl Facts for $ty {
            fn string(&self, var: Var) -> &str {
                self.view().string(var)
            }
            fn int(&self, var: Var) -> i64 {
                self.view().int(var)
            }
            fn count(&self, map: MapVar, key: &str) -> usize {
                self.view().count(map, key)
            }
            fn value(&self, map: MapVar, key: &str, index: usize) -> Option<&str> {
                self.view().value(map, key, index)
            }
            fn map_size(&self, map: MapVar) -> usize {
                self.view().map_size(map)
            }
            fn keys(&self, map: MapVar) -> Vec<String> {
                self.view().keys(map)
            }
            fn user_var(&self, name: &str) -> Option<&serde_json::Value> {
                self.view().user_var(name)
            }
            fn results(&self) -> &ActionResults {
                self.view().results()
            }
            fn boolean(&self, var: Var) -> bool {
                connection_bool(self.view().info.conn, var)
            }
            fn list(&self, var: Var) -> &[String] {
                connection_list(self.view().info.conn, var)
            }
        }
    };
}

impl View<'_> {
    fn view(&self) -> View<'_> {
        *self
    }
}

facts_via_view!(View<'_>);
facts_via_view!(OnHttp<'_>);

/// The exchange of an HTTP phase: reads everything; edits the request's headers and
/// target in on_http_request, the response's headers in on_http_response.
pub(super) struct OnHttp<'s> {
    pub(super) req: &'s mut RequestHead,
    /// The response, in on_http_response.
    pub(super) resp: Option<&'s mut ResponseHead>,
    pub(super) info: RequestInfo<'s>,
    pub(super) route: &'s Route,
    pub(super) vars: &'s mut Vars,
    pub(super) results: &'s mut Results,
    pub(super) forward_error: Option<ProxyError>,
    /// The action running now: its runtime state is kept under this id.
    pub(super) action: ActionId,
}

impl OnHttp<'_> {
    fn view(&self) -> View<'_> {
        View {
            req: self.req,
            resp: self.resp.as_deref(),
            info: self.info,
            route: self.route,
            vars: self.vars,
            results: self.results,
            forward_error: self.forward_error,
        }
    }
}

impl Exchange for OnHttp<'_> {
    fn facts(&self) -> &dyn Facts {
        self
    }
    fn headers(&mut self) -> &mut dyn HeadersMut {
        match &mut self.resp {
            Some(resp) => &mut resp.headers,
            None => &mut self.req.headers,
        }
    }
    fn set_var(&mut self, name: &str, value: serde_json::Value) {
        self.vars.set(name, value);
    }
    fn set_target(&mut self, target: &str) {
        // Validation keeps url-rewrite out of on_http_response.
        if self.resp.is_none() {
            self.req.set_target(target);
        }
    }
    fn log(&mut self, line: String) {
        log::info!(target: "innergate::policy", "{line}");
    }
    fn admit(&mut self, key: &[u8]) -> Result<(), u64> {
        // Validation keeps rate-limit in on_http_request, whose routes have counters
        // for every rate-limit compiled with the table.
        match self.route.limit(self.action) {
            Some(counters) => counters.admit(self.info.conn.worker, key, now_ms()),
            None => Ok(()),
        }
    }
    fn terminate_tls(&mut self) {
        // Validation keeps terminate-tls in on_tcp_connect.
    }
    fn results(&mut self) -> Option<&mut ActionResults> {
        self.route
            .policy
            .reads_results
            .then(|| self.results.get_mut())
    }
}

/// Headers for phases that have none (on_tcp_connect): validation keeps the header
/// actions out, so nothing ever arrives here.
pub(super) struct NoHeaders;

impl HeadersMut for NoHeaders {
    fn append(&mut self, _: &str, _: &str) {}
    fn remove(&mut self, _: &str) -> bool {
        false
    }
}

/// The connect phase's exchange: connection facts only.
pub(super) struct OnConnect<'s> {
    pub(super) conn: &'s ConnInfo,
    pub(super) endpoint: EndpointIdx,
    pub(super) route: &'s Route,
    pub(super) vars: &'s mut Vars,
    pub(super) results: &'s mut Results,
    pub(super) forward_error: Option<ProxyError>,
    pub(super) none: NoHeaders,
    /// The action running now.
    pub(super) action: ActionId,
    /// The terminate-tls that ran: (endpoint, action).
    pub(super) terminate: &'s mut Option<(EndpointIdx, ActionId)>,
}

impl Facts for OnConnect<'_> {
    fn string(&self, var: Var) -> &str {
        // Request variables are refused in on_tcp_connect at create time.
        connection_string(self.conn, self.route, self.forward_error, var)
    }
    fn int(&self, var: Var) -> i64 {
        connection_int(self.conn, self.route, var)
    }
    fn count(&self, _: MapVar, _: &str) -> usize {
        0
    }
    fn value(&self, _: MapVar, _: &str, _: usize) -> Option<&str> {
        None
    }
    fn map_size(&self, _: MapVar) -> usize {
        0
    }
    fn user_var(&self, name: &str) -> Option<&serde_json::Value> {
        self.vars.get(name)
    }
    fn results(&self) -> &ActionResults {
        self.results.get()
    }
    fn boolean(&self, var: Var) -> bool {
        connection_bool(self.conn, var)
    }
    fn list(&self, var: Var) -> &[String] {
        connection_list(self.conn, var)
    }
}

impl Exchange for OnConnect<'_> {
    fn facts(&self) -> &dyn Facts {
        self
    }
    fn headers(&mut self) -> &mut dyn HeadersMut {
        &mut self.none
    }
    fn set_var(&mut self, name: &str, value: serde_json::Value) {
        self.vars.set(name, value);
    }
    fn set_target(&mut self, _: &str) {}
    fn log(&mut self, line: String) {
        log::info!(target: "innergate::policy", "{line}");
    }
    fn admit(&mut self, _: &[u8]) -> Result<(), u64> {
        Ok(())
    }
    fn terminate_tls(&mut self) {
        *self.terminate = Some((self.endpoint, self.action));
    }
    fn results(&mut self) -> Option<&mut ActionResults> {
        self.route
            .policy
            .reads_results
            .then(|| self.results.get_mut())
    }
}
