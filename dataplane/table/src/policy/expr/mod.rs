//! Policy expressions: CEL (SPEC §4), parsed with the `cel` crate, then type-checked
//! and compiled here into a small tree that evaluates against a request without
//! allocating for the common cases (comparisons of method, path, host and headers).
//!
//! The language is the subset SPEC §4 lists: literals, `== != < <= > >=`, `&& || !`,
//! `?:`, `in` (lists and maps), `size()`, the string functions `startsWith endsWith
//! contains matches lowerAscii`, indexing, `has()`. Variables are typed; a variable
//! that does not exist in the phase (such as `res.*` before the response) is an error
//! at create time, with its column.

mod comprehension;
mod cookies;
mod digest;
mod eval;
mod strings;
mod template;
mod time;
mod tls;
mod user_agent;

use std::fmt;

use cel::common::ast::SourceInfo;
use cel::common::ast::{operators, Expr as Ast, IdedExpr, LiteralValue};

pub use eval::{EvalError, Facts, Val};
pub use template::Template;
pub use tls::{CertOf, CertVar, NameField, TlsVar};
pub use user_agent::UaField;

use super::Phase;

/// A value's type, checked at create time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `true`/`false`.
    Bool,
    /// A 64-bit integer.
    Int,
    /// A 64-bit float.
    Double,
    /// A point in time.
    Timestamp,
    /// A signed span of time.
    Duration,
    /// A UTF-8 string.
    String,
    /// A sequence of bytes (`b'…'`, `base64.decode`).
    Bytes,
    /// A list of strings (header values, query values, list literals).
    List,
    /// A map from string to list of strings (headers, query parameters).
    Map,
    /// A map from string to string (action results such as `headers_added`).
    StrMap,
    /// `null`.
    Null,
    /// A value whose type is known only when it runs (`vars.*`, which set-vars may
    /// set to anything); checked where it is used.
    Dyn,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Double => "double",
            Type::Timestamp => "timestamp",
            Type::Duration => "duration",
            Type::String => "string",
            Type::Bytes => "bytes",
            Type::List => "list(string)",
            Type::Map => "map(string, list(string))",
            Type::StrMap => "map(string, string)",
            Type::Null => "null",
            Type::Dyn => "dyn",
        })
    }
}

/// A scalar variable a policy can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Var {
    /// `req.method`.
    Method,
    /// `req.host`, `req.url.host`: the Host without port, lowercased.
    Host,
    /// `req.url.authority`: the Host as sent (with its port, if any).
    Authority,
    /// `req.url.scheme`: `http` or `https`, as the client connected.
    Scheme,
    /// `req.url.path`, `req.url.raw_path`.
    Path,
    /// `req.url.query`: the raw query without `?`.
    Query,
    /// `req.url`, `req.url.raw`: `scheme://authority/path?query` (made by the evaluator).
    Url,
    /// `req.url.uri`: `/path?query` (made by the evaluator).
    Uri,
    /// `req.url.port`: the Host's port; 0 when it names none (made by the evaluator).
    UrlPort,
    /// `req.url.user_password`: always empty (requests are in origin-form).
    UserPassword,
    /// `req.version`: `1.0` or `1.1`.
    Version,
    /// `req.content_length`: -1 when unknown (chunked or none).
    ContentLength,
    /// `req.user_agent`: the User-Agent header.
    UserAgent,
    /// `req.content_type.raw`: the Content-Type header.
    ReqContentTypeRaw,
    /// `req.content_type`: its media type (made by the evaluator).
    ReqContentType,
    /// `req.location`: the Location header of the request.
    ReqLocation,
    /// `res.status_code`.
    StatusCode,
    /// `res.content_length`: -1 when unknown.
    ResContentLength,
    /// `res.content_type.raw`.
    ResContentTypeRaw,
    /// `res.content_type` (made by the evaluator).
    ResContentType,
    /// `res.location`.
    ResLocation,
    /// `conn.client_ip`.
    ClientIp,
    /// `conn.client_port`.
    ClientPort,
    /// `conn.server_port`.
    ServerPort,
    /// `conn.tls.sni`: empty without TLS.
    TlsSni,
    /// `conn.ts.start`: when the connection was accepted (a timestamp; facts give it
    /// as nanoseconds since the Unix epoch).
    ConnTsStart,
    /// `endpoint.id`.
    EndpointId,
    /// `endpoint.url`.
    EndpointUrl,
    /// `endpoint.host`.
    EndpointHost,
    /// `endpoint.addr`: `host:port`.
    EndpointAddr,
    /// `endpoint.port`.
    EndpointPort,
    /// `endpoint.protocol`.
    EndpointProtocol,
    /// `time.now`: the current UTC time, RFC 3339 (made by the evaluator).
    TimeNow,
    /// `actions.ngrok.forward_internal.error.code` (also `actions.forward_internal.…`):
    /// empty when the last forward succeeded.
    ForwardErrorCode,
    /// `actions.ngrok.forward_internal.error.message`.
    ForwardErrorMessage,
    /// An action result ([`ActionResults`]), read by the evaluator.
    Result(ResultVar),
    /// A fact of the client's address from the data plane's IP data.
    Ip(IpVar),
    /// A fact of the connection's TLS (`conn.tls.*` but the SNI).
    Tls(TlsVar),
    /// A field of the parsed User-Agent (`req.user_agent.*`; made by the evaluator).
    UserAgentField(UaField),
}

/// What the data plane's IP data (`--geoip-db`, `--ip-categories`) says of the
/// client's address; empty, `false`, 0 or `[]` without the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVar {
    /// `conn.client_ip.geo.location.city`.
    LocationCity,
    /// `conn.client_ip.geo.location.continent`.
    LocationContinent,
    /// `conn.client_ip.geo.location.country`.
    LocationCountry,
    /// `conn.client_ip.geo.location.country_code`.
    LocationCountryCode,
    /// `conn.client_ip.geo.location.is_eu`.
    LocationIsEu,
    /// `conn.client_ip.geo.location.latitude`.
    LocationLatitude,
    /// `conn.client_ip.geo.location.longitude`.
    LocationLongitude,
    /// `conn.client_ip.geo.location.metro_code`.
    LocationMetroCode,
    /// `conn.client_ip.geo.location.postal_code`.
    LocationPostalCode,
    /// `conn.client_ip.geo.location.radius`.
    LocationRadius,
    /// `conn.client_ip.geo.location.subdivision`.
    LocationSubdivision,
    /// `conn.client_ip.geo.location.timezone`.
    LocationTimezone,
    /// `conn.client_ip.geo.registered_location.city`.
    RegisteredCity,
    /// `conn.client_ip.geo.registered_location.continent`.
    RegisteredContinent,
    /// `conn.client_ip.geo.registered_location.country`.
    RegisteredCountry,
    /// `conn.client_ip.geo.registered_location.country_code`.
    RegisteredCountryCode,
    /// `conn.client_ip.geo.registered_location.is_eu`.
    RegisteredIsEu,
    /// `conn.client_ip.geo.registered_location.metro_code`.
    RegisteredMetroCode,
    /// `conn.client_ip.geo.registered_location.subdivision`.
    RegisteredSubdivision,
    /// `conn.client_ip.geo.registered_location.timezone`.
    RegisteredTimezone,
    /// `conn.client_ip.as.number`.
    AsNumber,
    /// `conn.client_ip.as.organization`.
    AsOrganization,
    /// `conn.client_ip.categories`.
    Categories,
    /// `conn.client_ip.is_tor_node`.
    IsTorNode,
    /// `conn.client_ip.is_on_blocklist`.
    IsOnBlocklist,
}

/// A result variable of an action, `actions.ngrok.<action>.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultVar {
    /// `restrict_ips.action`.
    RestrictIpsAction,
    /// `restrict_ips.matched_cidr`.
    RestrictIpsMatchedCidr,
    /// `basic_auth.credentials.presented`.
    BasicAuthPresented,
    /// `basic_auth.credentials.username`.
    BasicAuthUsername,
    /// `basic_auth.credentials.authorized`.
    BasicAuthAuthorized,
    /// `rate_limit.bucket_key`.
    RateLimitBucketKey,
    /// `rate_limit.limited`.
    RateLimitLimited,
    /// `redirect.url`.
    RedirectUrl,
    /// `redirect.matches`.
    RedirectMatches,
    /// `redirect.error.code`.
    RedirectErrorCode,
    /// `redirect.error.message`.
    RedirectErrorMessage,
    /// `url_rewrite.url`.
    UrlRewriteUrl,
    /// `url_rewrite.matches`.
    UrlRewriteMatches,
    /// `url_rewrite.error.code`.
    UrlRewriteErrorCode,
    /// `url_rewrite.error.message`.
    UrlRewriteErrorMessage,
    /// `remove_headers.headers_removed`.
    HeadersRemoved,
    /// `forward_internal.url`.
    ForwardUrl,
    /// The `error.code`/`error.message` of actions that meet no run-time error in
    /// innergate (restrict-ips, rate-limit): always empty.
    NoError,
}

/// A map variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapVar {
    /// `req.headers`, keys lowercase.
    RequestHeaders,
    /// `req.url.query_params`.
    QueryParams,
    /// `res.headers`, keys lowercase.
    ResponseHeaders,
}

/// A map from string to string kept in the action results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrMapVar {
    /// `actions.ngrok.add_headers.headers_added`.
    HeadersAdded,
    /// `actions.ngrok.log.metadata`.
    LogMetadata,
}

/// Where a variable may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    Always,
    Http,
    Response,
}

use Availability::{Always, Http, Response};

const SCALARS: &[(&str, Var, Type, Availability)] = {
    use ResultVar as R;
    use Type::{Bool, Int, List, String as Str};
    use Var::Result as Res;
    &[
        ("req.method", Var::Method, Str, Http),
        ("req.host", Var::Host, Str, Http),
        ("req.url", Var::Url, Str, Http),
        ("req.url.raw", Var::Url, Str, Http),
        ("req.url.uri", Var::Uri, Str, Http),
        ("req.url.host", Var::Host, Str, Http),
        ("req.url.authority", Var::Authority, Str, Http),
        ("req.url.port", Var::UrlPort, Int, Http),
        ("req.url.user_password", Var::UserPassword, Str, Http),
        ("req.url.scheme", Var::Scheme, Str, Http),
        ("req.url.path", Var::Path, Str, Http),
        ("req.url.raw_path", Var::Path, Str, Http),
        ("req.url.query", Var::Query, Str, Http),
        ("req.version", Var::Version, Str, Http),
        ("req.content_length", Var::ContentLength, Int, Http),
        ("req.user_agent", Var::UserAgent, Str, Http),
        ("req.content_type", Var::ReqContentType, Str, Http),
        ("req.content_type.raw", Var::ReqContentTypeRaw, Str, Http),
        ("req.location", Var::ReqLocation, Str, Http),
        ("res.status_code", Var::StatusCode, Int, Response),
        ("res.content_length", Var::ResContentLength, Int, Response),
        ("res.content_type", Var::ResContentType, Str, Response),
        (
            "res.content_type.raw",
            Var::ResContentTypeRaw,
            Str,
            Response,
        ),
        ("res.location", Var::ResLocation, Str, Response),
        ("conn.client_ip", Var::ClientIp, Str, Always),
        ("conn.client_port", Var::ClientPort, Int, Always),
        ("conn.server_port", Var::ServerPort, Int, Always),
        ("conn.tls.sni", Var::TlsSni, Str, Always),
        ("conn.ts.start", Var::ConnTsStart, Type::Timestamp, Always),
        (
            "conn.client_ip.geo.location.city",
            Var::Ip(IpVar::LocationCity),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.continent",
            Var::Ip(IpVar::LocationContinent),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.country",
            Var::Ip(IpVar::LocationCountry),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.country_code",
            Var::Ip(IpVar::LocationCountryCode),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.is_eu",
            Var::Ip(IpVar::LocationIsEu),
            Bool,
            Always,
        ),
        (
            "conn.client_ip.geo.location.latitude",
            Var::Ip(IpVar::LocationLatitude),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.longitude",
            Var::Ip(IpVar::LocationLongitude),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.metro_code",
            Var::Ip(IpVar::LocationMetroCode),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.postal_code",
            Var::Ip(IpVar::LocationPostalCode),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.radius",
            Var::Ip(IpVar::LocationRadius),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.subdivision",
            Var::Ip(IpVar::LocationSubdivision),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.location.timezone",
            Var::Ip(IpVar::LocationTimezone),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.city",
            Var::Ip(IpVar::RegisteredCity),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.continent",
            Var::Ip(IpVar::RegisteredContinent),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.country",
            Var::Ip(IpVar::RegisteredCountry),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.country_code",
            Var::Ip(IpVar::RegisteredCountryCode),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.is_eu",
            Var::Ip(IpVar::RegisteredIsEu),
            Bool,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.metro_code",
            Var::Ip(IpVar::RegisteredMetroCode),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.subdivision",
            Var::Ip(IpVar::RegisteredSubdivision),
            Str,
            Always,
        ),
        (
            "conn.client_ip.geo.registered_location.timezone",
            Var::Ip(IpVar::RegisteredTimezone),
            Str,
            Always,
        ),
        ("conn.geo.city", Var::Ip(IpVar::LocationCity), Str, Always),
        (
            "conn.geo.country",
            Var::Ip(IpVar::LocationCountry),
            Str,
            Always,
        ),
        (
            "conn.geo.country_code",
            Var::Ip(IpVar::LocationCountryCode),
            Str,
            Always,
        ),
        (
            "conn.geo.latitude",
            Var::Ip(IpVar::LocationLatitude),
            Str,
            Always,
        ),
        (
            "conn.geo.longitude",
            Var::Ip(IpVar::LocationLongitude),
            Str,
            Always,
        ),
        (
            "conn.geo.radius",
            Var::Ip(IpVar::LocationRadius),
            Str,
            Always,
        ),
        (
            "conn.geo.subdivision",
            Var::Ip(IpVar::LocationSubdivision),
            Str,
            Always,
        ),
        (
            "conn.client_ip.as.number",
            Var::Ip(IpVar::AsNumber),
            Int,
            Always,
        ),
        (
            "conn.client_ip.as.organization",
            Var::Ip(IpVar::AsOrganization),
            Str,
            Always,
        ),
        (
            "conn.client_ip.categories",
            Var::Ip(IpVar::Categories),
            List,
            Always,
        ),
        (
            "conn.client_ip.is_tor_node",
            Var::Ip(IpVar::IsTorNode),
            Bool,
            Always,
        ),
        (
            "conn.client_ip.is_on_blocklist",
            Var::Ip(IpVar::IsOnBlocklist),
            Bool,
            Always,
        ),
        ("endpoint.id", Var::EndpointId, Str, Always),
        ("endpoint.url", Var::EndpointUrl, Str, Always),
        ("endpoint.host", Var::EndpointHost, Str, Always),
        ("endpoint.addr", Var::EndpointAddr, Str, Always),
        ("endpoint.port", Var::EndpointPort, Int, Always),
        ("endpoint.protocol", Var::EndpointProtocol, Str, Always),
        ("time.now", Var::TimeNow, Str, Always),
        (
            "actions.ngrok.forward_internal.error.code",
            Var::ForwardErrorCode,
            Str,
            Always,
        ),
        (
            "actions.ngrok.forward_internal.error.message",
            Var::ForwardErrorMessage,
            Str,
            Always,
        ),
        (
            "actions.ngrok.forward_internal.url",
            Res(R::ForwardUrl),
            Str,
            Always,
        ),
        // innergate's first name for them, kept as an alias.
        (
            "actions.forward_internal.error.code",
            Var::ForwardErrorCode,
            Str,
            Always,
        ),
        (
            "actions.forward_internal.error.message",
            Var::ForwardErrorMessage,
            Str,
            Always,
        ),
        (
            "actions.ngrok.restrict_ips.action",
            Res(R::RestrictIpsAction),
            Str,
            Always,
        ),
        (
            "actions.ngrok.restrict_ips.matched_cidr",
            Res(R::RestrictIpsMatchedCidr),
            Str,
            Always,
        ),
        (
            "actions.ngrok.restrict_ips.error.code",
            Res(R::NoError),
            Str,
            Always,
        ),
        (
            "actions.ngrok.restrict_ips.error.message",
            Res(R::NoError),
            Str,
            Always,
        ),
        (
            "actions.ngrok.basic_auth.credentials.presented",
            Res(R::BasicAuthPresented),
            Bool,
            Always,
        ),
        (
            "actions.ngrok.basic_auth.credentials.username",
            Res(R::BasicAuthUsername),
            Str,
            Always,
        ),
        (
            "actions.ngrok.basic_auth.credentials.authorized",
            Res(R::BasicAuthAuthorized),
            Bool,
            Always,
        ),
        (
            "actions.ngrok.rate_limit.bucket_key",
            Res(R::RateLimitBucketKey),
            Str,
            Always,
        ),
        (
            "actions.ngrok.rate_limit.limited",
            Res(R::RateLimitLimited),
            Bool,
            Always,
        ),
        (
            "actions.ngrok.rate_limit.error.code",
            Res(R::NoError),
            Str,
            Always,
        ),
        (
            "actions.ngrok.rate_limit.error.message",
            Res(R::NoError),
            Str,
            Always,
        ),
        (
            "actions.ngrok.redirect.url",
            Res(R::RedirectUrl),
            Str,
            Always,
        ),
        (
            "actions.ngrok.redirect.matches",
            Res(R::RedirectMatches),
            List,
            Always,
        ),
        (
            "actions.ngrok.redirect.error.code",
            Res(R::RedirectErrorCode),
            Str,
            Always,
        ),
        (
            "actions.ngrok.redirect.error.message",
            Res(R::RedirectErrorMessage),
            Str,
            Always,
        ),
        (
            "actions.ngrok.url_rewrite.url",
            Res(R::UrlRewriteUrl),
            Str,
            Always,
        ),
        (
            "actions.ngrok.url_rewrite.matches",
            Res(R::UrlRewriteMatches),
            List,
            Always,
        ),
        (
            "actions.ngrok.url_rewrite.error.code",
            Res(R::UrlRewriteErrorCode),
            Str,
            Always,
        ),
        (
            "actions.ngrok.url_rewrite.error.message",
            Res(R::UrlRewriteErrorMessage),
            Str,
            Always,
        ),
        (
            "actions.ngrok.remove_headers.headers_removed",
            Res(R::HeadersRemoved),
            List,
            Always,
        ),
    ]
};

const MAPS: &[(&str, MapVar, Availability)] = &[
    ("req.headers", MapVar::RequestHeaders, Http),
    ("req.url.query_params", MapVar::QueryParams, Http),
    ("res.headers", MapVar::ResponseHeaders, Response),
];

const STR_MAPS: &[(&str, StrMapVar)] = &[
    (
        "actions.ngrok.add_headers.headers_added",
        StrMapVar::HeadersAdded,
    ),
    ("actions.ngrok.log.metadata", StrMapVar::LogMetadata),
];

fn available(a: Availability, phase: Phase) -> bool {
    match a {
        Availability::Always => true,
        Availability::Http => phase != Phase::TcpConnect,
        Availability::Response => phase == Phase::HttpResponse,
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// String functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

/// The macros and functions of the hosted docs' macros page that take and give
/// strings, ints, bools and lists of strings. Each is typed by [`FUNCTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Lower,
    Upper,
    UpperAscii,
    Trim,
    Reverse,
    CharAt,
    IndexOf,
    LastIndexOf,
    Substring,
    Replace,
    Split,
    Join,
    EncodeBase64,
    DecodeBase64,
    EscapeUrl,
    UnescapeUrl,
    IsPrivateIp,
    IsUrl,
    /// `int(x)`, `uint(x)` (which refuses negative values), `double(x)`,
    /// `string(x)`, `timestamp(x)`, `duration(x)`: conversions.
    ToInt,
    ToUint,
    ToDouble,
    ToString,
    ToTimestamp,
    ToDuration,
    RandDouble,
    RandInt,
    /// `t.getHours([zone])` and the other calendar fields of a timestamp.
    TimestampField(time::Field),
    /// `d.getHours()` and the other fields of a duration.
    DurationField(time::Field),
    JsonDecode,
    JsonEncode,
    IsJson,
    QueryDecode,
    QueryEncode,
    IsQueryString,
    /// `hash.md5(s[, format])`, `s.md5()` and the other digests.
    Hash(Digest),
    Slice,
    Flatten,
    Sort,
    Distinct,
    Range,
    InCidrRange,
    InCidrRanges,
    BasicAuthEncode,
    Format,
    Quote,
    ParseUrl,
    ToBytes,
    Base64Encode,
    Base64Decode,
}

/// The digests of the `hash.*` macros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Digest {
    Crc32,
    Crc64,
    Md5,
    Sha1,
    Sha256,
    Sha512,
    XxHash64,
}

/// How a function is called: on a receiver (`s.trim()`) or by a global name
/// (`url.escape(s)`; the receiver is then `None`).
struct Signature {
    name: &'static str,
    receiver: Option<Type>,
    args: &'static [Type],
    /// Arguments that may follow `args`.
    optional: &'static [Type],
    returns: Type,
    func: Func,
}

const FUNCTIONS: &[Signature] = {
    use Type::{Bool, Int, List, String as Str};
    const fn method(
        name: &'static str,
        args: &'static [Type],
        optional: &'static [Type],
        returns: Type,
        func: Func,
    ) -> Signature {
        Signature {
            name,
            receiver: Some(Str),
            args,
            optional,
            returns,
            func,
        }
    }
    const fn global(
        name: &'static str,
        args: &'static [Type],
        returns: Type,
        func: Func,
    ) -> Signature {
        Signature {
            name,
            receiver: None,
            args,
            optional: &[],
            returns,
            func,
        }
    }
    &[
        method("lower", &[], &[], Str, Func::Lower),
        method("upper", &[], &[], Str, Func::Upper),
        method("upperAscii", &[], &[], Str, Func::UpperAscii),
        method("trim", &[], &[], Str, Func::Trim),
        method("reverse", &[], &[], Str, Func::Reverse),
        method("charAt", &[Int], &[], Str, Func::CharAt),
        method("indexOf", &[Str], &[Int], Int, Func::IndexOf),
        method("lastIndexOf", &[Str], &[Int], Int, Func::LastIndexOf),
        method("substring", &[Int], &[Int], Str, Func::Substring),
        method("replace", &[Str, Str], &[Int], Str, Func::Replace),
        method("split", &[], &[Str, Int], List, Func::Split),
        Signature {
            name: "join",
            receiver: Some(List),
            args: &[],
            optional: &[Str],
            returns: Str,
            func: Func::Join,
        },
        method("encodeBase64", &[], &[], Str, Func::EncodeBase64),
        method("decodeBase64", &[], &[], Str, Func::DecodeBase64),
        method("escapeUrl", &[], &[], Str, Func::EscapeUrl),
        method("unescapeUrl", &[], &[], Str, Func::UnescapeUrl),
        method("isPrivateIp", &[], &[], Bool, Func::IsPrivateIp),
        method("isURL", &[], &[], Bool, Func::IsUrl),
        global("url.escape", &[Str], Str, Func::EscapeUrl),
        global("url.unescape", &[Str], Str, Func::UnescapeUrl),
        global("url.parse", &[Str], Type::Dyn, Func::ParseUrl),
        method("parseUrl", &[], &[], Type::Dyn, Func::ParseUrl),
        method("format", &[Type::Dyn], &[], Str, Func::Format),
        global("strings.quote", &[Str], Str, Func::Quote),
        global("base64.encode", &[Type::Bytes], Str, Func::Base64Encode),
        global("base64.decode", &[Str], Type::Bytes, Func::Base64Decode),
        global("inCidrRange", &[Str, Str], Bool, Func::InCidrRange),
        global("inCidrRanges", &[Str, List], Bool, Func::InCidrRanges),
        global("basic_auth.encode", &[Str, Str], Str, Func::BasicAuthEncode),
        global("rand.double", &[], Type::Double, Func::RandDouble),
        Signature {
            name: "rand.int",
            receiver: None,
            args: &[],
            optional: &[Int, Int],
            returns: Int,
            func: Func::RandInt,
        },
        timestamp_field("getDate", time::Field::Date),
        timestamp_field("getDayOfMonth", time::Field::DayOfMonth),
        timestamp_field("getDayOfWeek", time::Field::DayOfWeek),
        timestamp_field("getDayOfYear", time::Field::DayOfYear),
        timestamp_field("getFullYear", time::Field::FullYear),
        timestamp_field("getHours", time::Field::Hours),
        timestamp_field("getMilliseconds", time::Field::Milliseconds),
        timestamp_field("getMinutes", time::Field::Minutes),
        timestamp_field("getMonth", time::Field::Month),
        timestamp_field("getSeconds", time::Field::Seconds),
        duration_field("getHours", time::Field::Hours),
        duration_field("getMilliseconds", time::Field::Milliseconds),
        duration_field("getMinutes", time::Field::Minutes),
        duration_field("getSeconds", time::Field::Seconds),
        global("json.decode", &[Str], Type::Dyn, Func::JsonDecode),
        global("json.encode", &[Type::Dyn], Str, Func::JsonEncode),
        method("decodeJson", &[], &[], Type::Dyn, Func::JsonDecode),
        method("isJson", &[], &[], Bool, Func::IsJson),
        dyn_method("encodeJson", &[], &[], Str, Func::JsonEncode),
        global("queryString.decode", &[Str], Type::Dyn, Func::QueryDecode),
        global("queryString.encode", &[Type::Dyn], Str, Func::QueryEncode),
        method("decodeQueryString", &[], &[], Type::Dyn, Func::QueryDecode),
        method("isQueryString", &[], &[], Bool, Func::IsQueryString),
        dyn_method("encodeQueryString", &[], &[], Str, Func::QueryEncode),
        dyn_method("slice", &[Int, Int], &[], Type::Dyn, Func::Slice),
        dyn_method("flatten", &[], &[Int], Type::Dyn, Func::Flatten),
        dyn_method("sort", &[], &[], Type::Dyn, Func::Sort),
        dyn_method("distinct", &[], &[], Type::Dyn, Func::Distinct),
        global("lists.range", &[Int], Type::Dyn, Func::Range),
        hash("hash.crc32", Digest::Crc32),
        hash("hash.crc64", Digest::Crc64),
        hash("hash.md5", Digest::Md5),
        hash("hash.sha1", Digest::Sha1),
        hash("hash.sha256", Digest::Sha256),
        hash("hash.sha512", Digest::Sha512),
        hash("hash.xxhash64", Digest::XxHash64),
        method("crc32", &[], &[Str], Str, Func::Hash(Digest::Crc32)),
        method("crc64", &[], &[Str], Str, Func::Hash(Digest::Crc64)),
        method("md5", &[], &[Str], Str, Func::Hash(Digest::Md5)),
        method("sha1", &[], &[Str], Str, Func::Hash(Digest::Sha1)),
        method("sha256", &[], &[Str], Str, Func::Hash(Digest::Sha256)),
        method("sha512", &[], &[Str], Str, Func::Hash(Digest::Sha512)),
        method("xxhash64", &[], &[Str], Str, Func::Hash(Digest::XxHash64)),
    ]
};

/// A method on a list or map (any value; checked when it runs).
const fn dyn_method(
    name: &'static str,
    args: &'static [Type],
    optional: &'static [Type],
    returns: Type,
    func: Func,
) -> Signature {
    Signature {
        name,
        receiver: Some(Type::Dyn),
        args,
        optional,
        returns,
        func,
    }
}

/// `hash.NAME(s[, 'hex' | 'base64'])`.
const fn hash(name: &'static str, digest: Digest) -> Signature {
    Signature {
        name,
        receiver: None,
        args: &[Type::String],
        optional: &[Type::String],
        returns: Type::String,
        func: Func::Hash(digest),
    }
}

/// `ts.getX([zone])`: a field of a timestamp, in UTC or the named zone.
const fn timestamp_field(name: &'static str, field: time::Field) -> Signature {
    Signature {
        name,
        receiver: Some(Type::Timestamp),
        args: &[],
        optional: &[Type::String],
        returns: Type::Int,
        func: Func::TimestampField(field),
    }
}

/// `d.getX()`: a field of a duration.
const fn duration_field(name: &'static str, field: time::Field) -> Signature {
    Signature {
        name,
        receiver: Some(Type::Duration),
        args: &[],
        optional: &[],
        returns: Type::Int,
        func: Func::DurationField(field),
    }
}

/// The types each conversion takes.
fn converts(func: Func, from: Type) -> bool {
    use Type::*;
    if from == Dyn {
        return true;
    }
    match func {
        Func::ToInt => matches!(from, Int | Double | String | Timestamp),
        Func::ToUint | Func::ToDouble => matches!(from, Int | Double | String),
        Func::ToString => {
            matches!(
                from,
                Int | Double | String | Bytes | Bool | Timestamp | Duration
            )
        }
        Func::ToBytes => matches!(from, String | Bytes),
        Func::ToTimestamp => matches!(from, String | Timestamp | Int),
        Func::ToDuration => matches!(from, String | Duration),
        _ => false,
    }
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The type of `l op r`, when CEL defines it.
fn arith_type(op: ArithOp, l: Type, r: Type) -> Option<Type> {
    use ArithOp::*;
    use Type::*;
    Some(match (op, l, r) {
        (_, Dyn, _) | (_, _, Dyn) => Dyn,
        (_, Int, Int) => Int,
        (Add | Sub | Mul | Div, Double, Double) => Double,
        (Add, String, String) => String,
        (Add, List, List) => Dyn,
        (Sub, Timestamp, Timestamp) => Duration,
        (Add | Sub, Timestamp, Duration) => Timestamp,
        (Add, Duration, Timestamp) => Timestamp,
        (Add | Sub, Duration, Duration) => Duration,
        _ => return None,
    })
}

/// A compiled expression node.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A bytes literal.
    Bytes(Box<[u8]>),
    /// A value a macro bound (an element, its accumulator), then fields of it.
    Bound(u16, Box<[Box<str>]>),
    /// `all`, `exists`, `exists_one`, `filter`, `map`, as the parser expands them.
    Comprehension(Box<comprehension::Comprehension>),
    /// The expansion's `@not_strictly_false`: true unless false (an error is true).
    NotStrictlyFalse(Box<Node>),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// `a + b` and the other arithmetic, typed at create time.
    Arith(ArithOp, Box<Node>, Box<Node>),
    Str(Box<str>),
    Null,
    Var(Var),
    /// A whole map (only as the right side of `in`, or for `size`).
    Map(MapVar),
    /// A whole string map (the right side of `in`, `size`).
    StrMap(StrMapVar),
    /// `strmap[key]`.
    StrMapValue(StrMapVar, Box<Node>),
    /// A function of [`FUNCTIONS`] over its receiver and arguments, in order.
    Call(Func, Vec<Node>),
    /// `inCidrRange(s)` over literal ranges, parsed once (those that do not parse
    /// dropped: they never match).
    InCidrs(Box<Node>, Vec<crate::policy::cidr::Cidr>),
    /// `vars.NAME`, or `vars.NAME.a.b` (fields of a map it holds).
    UserVar(Box<str>, Box<[Box<str>]>),
    /// `value[key]` of a dynamic value (a list index or a map key).
    DynIndex(Box<Node>, Box<Node>),
    /// A dynamic value where a type is expected: an error when it is another.
    AsType(Type, Box<Node>),
    /// `x in value` of a dynamic value (a list's items, a map's keys).
    InDyn(Box<Node>, Box<Node>),
    /// A list literal of values other than strings (`[1, 2]`), or with keys a map
    /// literal (`{'a': 1}`): a dyn value made when it runs.
    Literal(Vec<Node>, Option<Vec<Node>>),
    /// `req.cookies` (headers of the request) or `res.cookies` (of the response).
    Cookies(MapVar),
    /// `getReqCookie(name)`, `getResCookie(name)`: the first cookie of that name.
    Cookie(MapVar, Box<Node>),
    /// `hasReqCookie(name)`, `hasResCookie(name)`.
    HasCookie(MapVar, Box<Node>),
    /// `has(vars.NAME)`, `has(vars.NAME.a.b)`.
    HasUserVar(Box<str>, Box<[Box<str>]>),
    /// `map[key]`: the values of one key.
    MapValues(MapVar, Box<Node>),
    /// `list[i]`.
    ListIndex(Box<Node>, Box<Node>),
    /// `[a, b]`.
    List(Vec<Node>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Compare(Cmp, Box<Node>, Box<Node>),
    /// `x in list`.
    InList(Box<Node>, Box<Node>),
    /// `key in map`, `has(map.key)`.
    InMap(Box<Node>, MapVar),
    /// `key in strmap`.
    InStrMap(Box<Node>, StrMapVar),
    Size(Box<Node>),
    StrFn(StrFn, Box<Node>, Box<Node>),
    Matches(Box<Node>, regex::Regex),
    LowerAscii(Box<Node>),
    Negate(Box<Node>),
}

/// A compiled, type-checked expression.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    pub(crate) root: Node,
    ty: Type,
}

/// Why an expression was refused: the column (1-based) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based column in the expression.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl Expression {
    /// Compiles a condition: an expression of type bool over the variables of `phase`.
    pub fn compile(source: &str, phase: Phase) -> Result<Expression, ExprError> {
        let expr = Self::compile_any(source, phase)?;
        if !matches!(expr.ty, Type::Bool | Type::Dyn) {
            return Err(ExprError {
                column: 1,
                message: format!("a rule expression must be a bool, this is a {}", expr.ty),
            });
        }
        Ok(expr)
    }

    /// Compiles an expression of any type (for `${…}` interpolation).
    pub fn compile_any(source: &str, phase: Phase) -> Result<Expression, ExprError> {
        let (ast, info) = cel::parser::Parser::new()
            .parse_with_source_info(source)
            .map_err(|errors| {
                let first = errors.errors.first();
                ExprError {
                    column: first.map_or(1, |e| e.pos.1.max(0) as usize + 1),
                    message: first.map_or_else(
                        || "cannot parse".to_string(),
                        |e| format!("syntax error: {}", e.msg),
                    ),
                }
            })?;
        let compiler = Compiler {
            info: &info,
            phase,
            scope: Default::default(),
            next_slot: Default::default(),
        };
        let (root, ty) = compiler.compile(&ast)?;
        Ok(Expression {
            source: source.to_string(),
            root,
            ty,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's type.
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// Evaluates a condition; a run-time error (such as a missing header indexed
    /// with `[0]`) makes it false, as a rule that cannot be evaluated does not match.
    pub fn matches(&self, facts: &dyn Facts) -> bool {
        matches!(eval::eval(&self.root, facts), Ok(Val::Bool(true)))
    }

    /// Evaluates to a value.
    pub fn eval<'a>(&'a self, facts: &'a dyn Facts) -> Result<Val<'a>, EvalError> {
        eval::eval(&self.root, facts)
    }
}

struct Compiler<'i> {
    info: &'i SourceInfo,
    phase: Phase,
    /// The names the macros being compiled bind, innermost last.
    scope: std::cell::RefCell<Vec<comprehension::Binding>>,
    /// The next slot a bound name gets (unique within one expression).
    next_slot: std::cell::Cell<u16>,
}

impl Compiler<'_> {
    fn error(&self, at: &IdedExpr, message: impl Into<String>) -> ExprError {
        // A dotted name is reported where it starts, at its root identifier.
        let mut at = at;
        while let Ast::Select(select) = &at.expr {
            at = &select.operand;
        }
        let column = self
            .info
            .offset_for(at.id)
            .map_or(1, |(start, _)| start as usize + 1);
        ExprError {
            column,
            message: message.into(),
        }
    }

    fn compile(&self, e: &IdedExpr) -> Result<(Node, Type), ExprError> {
        match &e.expr {
            Ast::Literal(lit) => Ok(match lit {
                LiteralValue::Boolean(b) => (Node::Bool(*b.inner()), Type::Bool),
                LiteralValue::Int(i) => (Node::Int(*i.inner()), Type::Int),
                LiteralValue::UInt(u) => {
                    let v = i64::try_from(*u.inner())
                        .map_err(|_| self.error(e, "integer too large"))?;
                    (Node::Int(v), Type::Int)
                }
                LiteralValue::String(s) => (Node::Str(s.inner().into()), Type::String),
                LiteralValue::Null => (Node::Null, Type::Null),
                LiteralValue::Double(d) => (Node::Double(*d.inner()), Type::Double),
                LiteralValue::Bytes(bytes) => (Node::Bytes(bytes.inner().into()), Type::Bytes),
            }),
            // The parser expands `has(a.b)` into a test-only select.
            Ast::Select(select) if select.test => {
                let base = dotted(&select.operand)
                    .ok_or_else(|| self.error(e, "has() takes a field, like has(vars.name)"))?;
                self.has(e, &format!("{base}.{}", select.field))
            }
            Ast::Ident(_) | Ast::Select(_) if dotted(e).is_some() => self.variable(e),
            // A field of a value that is not a variable: a cookie, a list item.
            Ast::Select(select) => {
                let (operand, ty) = self.compile(&select.operand)?;
                if ty != Type::Dyn {
                    return Err(self.error(e, format!("a {ty} has no field `{}`", select.field)));
                }
                Ok((
                    Node::DynIndex(
                        Box::new(operand),
                        Box::new(Node::Str(select.field.as_str().into())),
                    ),
                    Type::Dyn,
                ))
            }
            Ast::Ident(_) => self.variable(e),
            Ast::List(list) => {
                let mut items = Vec::with_capacity(list.elements.len());
                let mut strings = true;
                for item in &list.elements {
                    let (node, ty) = self.compile(item)?;
                    strings &= ty == Type::String;
                    items.push(node);
                }
                // Strings only: the list type the fast paths know; else a dyn list.
                if strings {
                    Ok((Node::List(items), Type::List))
                } else {
                    Ok((Node::Literal(items, None), Type::Dyn))
                }
            }
            Ast::Map(map) => {
                let mut keys = Vec::with_capacity(map.entries.len());
                let mut values = Vec::with_capacity(map.entries.len());
                for entry in &map.entries {
                    let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr else {
                        return Err(self.error(e, "message literals are not supported"));
                    };
                    keys.push(self.typed(&entry.key, Type::String, "a map key")?);
                    values.push(self.compile(&entry.value)?.0);
                }
                Ok((Node::Literal(values, Some(keys)), Type::Dyn))
            }
            Ast::Call(call) => self.call(e, call),
            Ast::Struct(_) => Err(self.error(e, "message literals are not supported")),
            Ast::Comprehension(c) => self.comprehension(e, c),
            Ast::Unspecified => Err(self.error(e, "empty expression")),
        }
    }

    /// A dotted name: a scalar, a map, or `vars.NAME`.
    fn variable(&self, e: &IdedExpr) -> Result<(Node, Type), ExprError> {
        let path = dotted(e).ok_or_else(|| self.error(e, "expected a variable"))?;
        let mut parts = path.split('.');
        if let Some(binding) = parts.next().and_then(|root| self.bound(root)) {
            let fields: Vec<Box<str>> = parts.map(Box::from).collect();
            if !fields.is_empty() && binding.ty != Type::Dyn {
                return Err(self.error(e, format!("a {} has no fields", binding.ty)));
            }
            let ty = if fields.is_empty() {
                binding.ty
            } else {
                Type::Dyn
            };
            return Ok((Node::Bound(binding.slot, fields.into_boxed_slice()), ty));
        }
        if let Some(rest) = path.strip_prefix("vars.") {
            let mut parts = rest.split('.');
            let name = parts.next().unwrap_or("");
            if name.is_empty() {
                return Err(self.error(e, "vars are read as vars.NAME"));
            }
            let fields: Vec<Box<str>> = parts.map(Box::from).collect();
            return Ok((
                Node::UserVar(name.into(), fields.into_boxed_slice()),
                Type::Dyn,
            ));
        }
        for (name, var, ty, availability) in SCALARS {
            if *name == path {
                self.check_available(e, name, *availability)?;
                return Ok((Node::Var(*var), *ty));
            }
        }
        if let Some(field) = path
            .strip_prefix("req.user_agent.")
            .and_then(UaField::named)
        {
            self.check_available(e, "req.user_agent", Http)?;
            let ty = if field.is_bool() {
                Type::Bool
            } else {
                Type::String
            };
            return Ok((Node::Var(Var::UserAgentField(field)), ty));
        }
        if let Some((tls, ty)) = TlsVar::named(&path) {
            return Ok((Node::Var(Var::Tls(tls)), ty));
        }
        for (name, map) in STR_MAPS {
            if *name == path {
                return Ok((Node::StrMap(*map), Type::StrMap));
            }
        }
        for (name, side, availability) in [
            ("req.cookies", MapVar::RequestHeaders, Http),
            ("res.cookies", MapVar::ResponseHeaders, Response),
        ] {
            if path == name {
                self.check_available(e, name, availability)?;
                return Ok((Node::Cookies(side), Type::Dyn));
            }
        }
        for (name, map, availability) in MAPS {
            if *name == path {
                self.check_available(e, name, *availability)?;
                return Ok((Node::Map(*map), Type::Map));
            }
            // `req.headers.accept` reads like `req.headers['accept']`.
            if let Some(key) = path.strip_prefix(name).and_then(|r| r.strip_prefix('.')) {
                self.check_available(e, name, *availability)?;
                return Ok((
                    Node::MapValues(*map, Box::new(Node::Str(key.into()))),
                    Type::List,
                ));
            }
        }
        Err(self.error(e, format!("unknown variable `{path}`")))
    }

    fn check_available(&self, e: &IdedExpr, name: &str, a: Availability) -> Result<(), ExprError> {
        if available(a, self.phase) {
            Ok(())
        } else {
            Err(self.error(
                e,
                format!("`{name}` is not available in {}", self.phase.key()),
            ))
        }
    }

    /// `has(vars.NAME)` or `has(map.key)`.
    fn has(&self, e: &IdedExpr, path: &str) -> Result<(Node, Type), ExprError> {
        if let Some(rest) = path.strip_prefix("vars.") {
            let mut parts = rest.split('.');
            let name = parts.next().unwrap_or("");
            let fields: Vec<Box<str>> = parts.map(Box::from).collect();
            return Ok((
                Node::HasUserVar(name.into(), fields.into_boxed_slice()),
                Type::Bool,
            ));
        }
        for (map_name, map, availability) in MAPS {
            if let Some(key) = path
                .strip_prefix(map_name)
                .and_then(|r| r.strip_prefix('.'))
            {
                self.check_available(e, map_name, *availability)?;
                return Ok((
                    Node::InMap(Box::new(Node::Str(key.into())), *map),
                    Type::Bool,
                ));
            }
        }
        Err(self.error(
            e,
            format!("has() cannot test `{path}`; use it on vars.NAME or a map field"),
        ))
    }

    fn typed(&self, e: &IdedExpr, want: Type, what: &str) -> Result<Node, ExprError> {
        let (node, ty) = self.compile(e)?;
        if want == Type::Dyn {
            return Ok(node);
        }
        if ty == Type::Dyn {
            return Ok(Node::AsType(want, Box::new(node)));
        }
        if ty != want {
            return Err(self.error(e, format!("{what} expects {want}, found {ty}")));
        }
        Ok(node)
    }

    fn call(
        &self,
        e: &IdedExpr,
        call: &cel::common::ast::CallExpr,
    ) -> Result<(Node, Type), ExprError> {
        let name = call.func_name.as_str();
        let args = &call.args;
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(self.error(e, format!("`{name}` takes {n} argument(s)")))
            }
        };
        let b = Box::new;
        match (name, &call.target) {
            (operators::LOGICAL_AND | operators::LOGICAL_OR, None) => {
                arity(2)?;
                let l = self.typed(&args[0], Type::Bool, "&& and ||")?;
                let r = self.typed(&args[1], Type::Bool, "&& and ||")?;
                let node = if name == operators::LOGICAL_AND {
                    Node::And(b(l), b(r))
                } else {
                    Node::Or(b(l), b(r))
                };
                Ok((node, Type::Bool))
            }
            // What the macros' expansion wraps its conditions in.
            (operators::NOT_STRICTLY_FALSE, None) => {
                arity(1)?;
                Ok((
                    Node::NotStrictlyFalse(b(self.typed(&args[0], Type::Bool, "a condition")?)),
                    Type::Bool,
                ))
            }
            (operators::LOGICAL_NOT, None) => {
                arity(1)?;
                Ok((
                    Node::Not(b(self.typed(&args[0], Type::Bool, "!")?)),
                    Type::Bool,
                ))
            }
            (operators::NEGATE, None) => {
                arity(1)?;
                let (node, ty) = self.compile(&args[0])?;
                if !matches!(ty, Type::Int | Type::Double | Type::Duration | Type::Dyn) {
                    return Err(self.error(e, format!("- expects a number, found {ty}")));
                }
                Ok((Node::Negate(b(node)), ty))
            }
            (
                operators::ADD
                | operators::SUBSTRACT
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO,
                None,
            ) => {
                arity(2)?;
                let op = match name {
                    operators::ADD => ArithOp::Add,
                    operators::SUBSTRACT => ArithOp::Sub,
                    operators::MULTIPLY => ArithOp::Mul,
                    operators::DIVIDE => ArithOp::Div,
                    _ => ArithOp::Rem,
                };
                let (l, lt) = self.compile(&args[0])?;
                let (r, rt) = self.compile(&args[1])?;
                let ty = arith_type(op, lt, rt).ok_or_else(|| {
                    self.error(
                        e,
                        format!("no {} for {lt} and {rt}", name.trim_matches('_')),
                    )
                })?;
                Ok((Node::Arith(op, b(l), b(r)), ty))
            }
            ("int" | "uint" | "double" | "string" | "bytes" | "timestamp" | "duration", None) => {
                arity(1)?;
                let func = match name {
                    "int" => Func::ToInt,
                    "bytes" => Func::ToBytes,
                    "uint" => Func::ToUint,
                    "double" => Func::ToDouble,
                    "string" => Func::ToString,
                    "timestamp" => Func::ToTimestamp,
                    _ => Func::ToDuration,
                };
                let (node, from) = self.compile(&args[0])?;
                if !converts(func, from) {
                    return Err(self.error(e, format!("{name}() does not take a {from}")));
                }
                // A literal is checked now, not on every request.
                if let Node::Str(text) = &node {
                    let valid = match func {
                        Func::ToTimestamp => time::parse_timestamp(text).is_some(),
                        Func::ToDuration => time::parse_duration(text).is_some(),
                        _ => true,
                    };
                    if !valid {
                        return Err(self.error(&args[0], format!("`{text}` is not a valid {name}")));
                    }
                }
                let ty = match func {
                    Func::ToInt | Func::ToUint => Type::Int,
                    Func::ToDouble => Type::Double,
                    Func::ToString => Type::String,
                    Func::ToBytes => Type::Bytes,
                    Func::ToTimestamp => Type::Timestamp,
                    _ => Type::Duration,
                };
                Ok((Node::Call(func, vec![node]), ty))
            }
            (operators::CONDITIONAL, None) => {
                arity(3)?;
                let c = self.typed(&args[0], Type::Bool, "?:")?;
                let (t, tt) = self.compile(&args[1])?;
                let (f, ft) = self.compile(&args[2])?;
                let ty = match (tt, ft) {
                    (a, b) if a == b => a,
                    (Type::Dyn, _) | (_, Type::Dyn) => Type::Dyn,
                    _ => return Err(self.error(e, format!("?: branches differ: {tt} and {ft}"))),
                };
                Ok((Node::Cond(b(c), b(t), b(f)), ty))
            }
            (
                operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                None,
            ) => {
                arity(2)?;
                let (l, lt) = self.compile(&args[0])?;
                let (r, rt) = self.compile(&args[1])?;
                let op = match name {
                    operators::EQUALS => Cmp::Eq,
                    operators::NOT_EQUALS => Cmp::Ne,
                    operators::LESS => Cmp::Lt,
                    operators::LESS_EQUALS => Cmp::Le,
                    operators::GREATER => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let ordered = |t: Type| {
                    matches!(
                        t,
                        Type::String
                            | Type::Bytes
                            | Type::Int
                            | Type::Bool
                            | Type::Double
                            | Type::Timestamp
                            | Type::Duration
                    )
                };
                let numbers = |t: Type| matches!(t, Type::Int | Type::Double);
                let comparable = lt == Type::Dyn
                    || rt == Type::Dyn
                    || lt == rt && ordered(lt)
                    || numbers(lt) && numbers(rt)
                    || (matches!(op, Cmp::Eq | Cmp::Ne)
                        && (lt == Type::Null
                            || rt == Type::Null
                            || lt == Type::List && rt == Type::List));
                if !comparable {
                    return Err(self.error(e, format!("cannot compare {lt} with {rt}")));
                }
                if lt == Type::Bool && !matches!(op, Cmp::Eq | Cmp::Ne) {
                    return Err(self.error(e, "bools are only compared with == and !="));
                }
                Ok((Node::Compare(op, b(l), b(r)), Type::Bool))
            }
            (operators::IN, None) => {
                arity(2)?;
                let (hay, ht) = self.compile(&args[1])?;
                if ht == Type::Dyn {
                    let (needle, _) = self.compile(&args[0])?;
                    return Ok((Node::InDyn(b(needle), b(hay)), Type::Bool));
                }
                let needle = self.typed(&args[0], Type::String, "in")?;
                match (ht, hay) {
                    (Type::List, hay) => Ok((Node::InList(b(needle), b(hay)), Type::Bool)),
                    (Type::Map, Node::Map(map)) => Ok((Node::InMap(b(needle), map), Type::Bool)),
                    (Type::StrMap, Node::StrMap(map)) => {
                        Ok((Node::InStrMap(b(needle), map), Type::Bool))
                    }
                    (t, _) => {
                        Err(self.error(&args[1], format!("in expects a list or map, found {t}")))
                    }
                }
            }
            (operators::INDEX, None) => {
                arity(2)?;
                let (target, tt) = self.compile(&args[0])?;
                if tt == Type::Dyn {
                    let (key, _) = self.compile(&args[1])?;
                    return Ok((Node::DynIndex(b(target), b(key)), Type::Dyn));
                }
                match (tt, target) {
                    (Type::Map, Node::Map(map)) => {
                        let key = self.typed(&args[1], Type::String, "a map index")?;
                        Ok((Node::MapValues(map, b(key)), Type::List))
                    }
                    (Type::StrMap, Node::StrMap(map)) => {
                        let key = self.typed(&args[1], Type::String, "a map index")?;
                        Ok((Node::StrMapValue(map, b(key)), Type::String))
                    }
                    (Type::List, list) => {
                        let index = self.typed(&args[1], Type::Int, "a list index")?;
                        Ok((Node::ListIndex(b(list), b(index)), Type::String))
                    }
                    (t, _) => Err(self.error(e, format!("cannot index a {t}"))),
                }
            }
            (operators::HAS, None) => {
                arity(1)?;
                let path = dotted(&args[0])
                    .ok_or_else(|| self.error(e, "has() takes a field, like has(vars.name)"))?;
                self.has(e, &path)
            }
            ("size", target) => {
                let arg = match (target, args.as_slice()) {
                    (Some(t), []) => t.as_ref(),
                    (None, [a]) => a,
                    _ => return Err(self.error(e, "size takes one argument")),
                };
                let (node, ty) = self.compile(arg)?;
                if !matches!(
                    ty,
                    Type::String | Type::Bytes | Type::List | Type::Map | Type::StrMap | Type::Dyn
                ) {
                    return Err(self.error(
                        arg,
                        format!("size expects a string, bytes, a list or a map, found {ty}"),
                    ));
                }
                Ok((Node::Size(b(node)), Type::Int))
            }
            ("startsWith" | "endsWith" | "contains", Some(target)) => {
                arity(1)?;
                let t = self.typed(target, Type::String, name)?;
                let a = self.typed(&args[0], Type::String, name)?;
                let f = match name {
                    "startsWith" => StrFn::StartsWith,
                    "endsWith" => StrFn::EndsWith,
                    _ => StrFn::Contains,
                };
                Ok((Node::StrFn(f, b(t), b(a)), Type::Bool))
            }
            ("matches", Some(target)) => {
                arity(1)?;
                let t = self.typed(target, Type::String, "matches")?;
                let Ast::Literal(LiteralValue::String(pattern)) = &args[0].expr else {
                    return Err(self.error(
                        &args[0],
                        "matches takes a string literal pattern (compiled once)",
                    ));
                };
                let re = regex::Regex::new(pattern.inner())
                    .map_err(|err| self.error(&args[0], format!("invalid regex: {err}")))?;
                Ok((Node::Matches(b(t), re), Type::Bool))
            }
            ("lowerAscii", Some(target)) => {
                arity(0)?;
                Ok((
                    Node::LowerAscii(b(self.typed(target, Type::String, "lowerAscii")?)),
                    Type::String,
                ))
            }
            (
                "getReqHeader" | "hasReqHeader" | "getResHeader" | "hasResHeader" | "getQueryParam"
                | "hasQueryParam",
                None,
            ) => {
                arity(1)?;
                let (map, map_name, availability) = match name {
                    "getReqHeader" | "hasReqHeader" => {
                        (MapVar::RequestHeaders, "req.headers", Http)
                    }
                    "getResHeader" | "hasResHeader" => {
                        (MapVar::ResponseHeaders, "res.headers", Response)
                    }
                    _ => (MapVar::QueryParams, "req.url.query_params", Http),
                };
                self.check_available(e, map_name, availability)?;
                let key = self.typed(&args[0], Type::String, name)?;
                if name.starts_with("get") {
                    Ok((Node::MapValues(map, b(key)), Type::List))
                } else {
                    Ok((Node::InMap(b(key), map), Type::Bool))
                }
            }
            ("getReqCookie" | "hasReqCookie" | "getResCookie" | "hasResCookie", None) => {
                arity(1)?;
                let (side, headers, availability) = if name.contains("Req") {
                    (MapVar::RequestHeaders, "req.cookies", Http)
                } else {
                    (MapVar::ResponseHeaders, "res.cookies", Response)
                };
                self.check_available(e, headers, availability)?;
                let key = self.typed(&args[0], Type::String, name)?;
                if name.starts_with("get") {
                    Ok((Node::Cookie(side, b(key)), Type::Dyn))
                } else {
                    Ok((Node::HasCookie(side, b(key)), Type::Bool))
                }
            }
            _ => self.function(e, call),
        }
    }

    /// A function of [`FUNCTIONS`]: a method on its receiver, or a global name
    /// (`url.escape(s)` arrives as a method `escape` on an identifier `url`).
    fn function(
        &self,
        e: &IdedExpr,
        call: &cel::common::ast::CallExpr,
    ) -> Result<(Node, Type), ExprError> {
        let name = call.func_name.as_str();
        let namespaced = match call.target.as_deref().map(|t| &t.expr) {
            Some(Ast::Ident(ns)) => Some(format!("{ns}.{name}")),
            _ => None,
        };
        let global_name = match &call.target {
            None => Some(name),
            Some(_) => namespaced.as_deref(),
        };
        let global = global_name.and_then(|g| {
            FUNCTIONS
                .iter()
                .find(|s| s.receiver.is_none() && s.name == g)
        });
        let (signature, mut operands): (&Signature, Vec<&IdedExpr>) = match (global, &call.target) {
            (Some(s), _) => (s, call.args.iter().collect()),
            (None, Some(target)) => {
                let (_, receiver) = self.compile(target)?;
                let s = FUNCTIONS
                    .iter()
                    .find(|s| s.name == name && s.receiver == Some(receiver))
                    .or_else(|| {
                        FUNCTIONS
                            .iter()
                            .find(|s| s.name == name && s.receiver.is_some())
                    })
                    .ok_or_else(|| self.error(e, format!("unknown function `{name}`")))?;
                let mut operands = vec![target.as_ref()];
                operands.extend(call.args.iter());
                (s, operands)
            }
            (None, None) => {
                return Err(self.error(e, format!("unknown function `{}`", name.trim_matches('_'))))
            }
        };
        let wanted: Vec<Type> = signature
            .receiver
            .into_iter()
            .chain(signature.args.iter().copied())
            .collect();
        let given = operands.len();
        let least = wanted.len();
        if given < least || given > least + signature.optional.len() {
            return Err(self.error(
                e,
                format!(
                    "`{}` takes {} argument(s){}",
                    signature.name,
                    signature.args.len(),
                    if signature.optional.is_empty() {
                        String::new()
                    } else {
                        format!(" and up to {} more", signature.optional.len())
                    }
                ),
            ));
        }
        let mut nodes = Vec::with_capacity(given);
        let zone_at = matches!(signature.func, Func::TimestampField(_)).then_some(1);
        for (i, operand) in operands.drain(..).enumerate() {
            if Some(i) == zone_at {
                if let Ast::Literal(LiteralValue::String(name)) = &operand.expr {
                    if time::zone(name.inner()).is_none() {
                        return Err(
                            self.error(operand, format!("unknown time zone `{}`", name.inner()))
                        );
                    }
                }
            }
            let want = wanted
                .get(i)
                .copied()
                .unwrap_or_else(|| signature.optional[i - least]);
            nodes.push(self.typed(operand, want, signature.name)?);
        }
        if let (Func::InCidrRange | Func::InCidrRanges, [_, ranges]) =
            (signature.func, nodes.as_slice())
        {
            let literal = |n: &Node| match n {
                Node::Str(s) => Some(crate::policy::cidr::Cidr::parse(s).ok()),
                _ => None,
            };
            let parsed: Option<Vec<_>> = match ranges {
                Node::List(items) => items.iter().map(literal).collect(),
                single => literal(single).map(|c| vec![c]),
            };
            if let Some(parsed) = parsed {
                let ip = nodes.swap_remove(0);
                return Ok((
                    Node::InCidrs(Box::new(ip), parsed.into_iter().flatten().collect()),
                    Type::Bool,
                ));
            }
        }
        Ok((Node::Call(signature.func, nodes), signature.returns))
    }
}

/// `a.b.c` as text, when `e` is a plain dotted name.
fn dotted(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Ast::Ident(name) => Some(name.clone()),
        Ast::Select(select) if !select.test => {
            let base = dotted(&select.operand)?;
            Some(format!("{base}.{}", select.field))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
