//! Evaluation of compiled expressions against what a request offers.

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};

use super::comprehension::Comprehension;
use super::time;
use super::{
    ArithOp, Cmp, Func, IpVar, MapVar, Node, ResultVar, StrFn, StrMapVar, Type, UaField, Var,
};
use crate::policy::cidr::Cidr;
use crate::policy::results::ActionResults;

/// What an expression can read. The data plane implements it over its parsed heads
/// and connection; strings are borrowed, so reading them costs no allocation.
pub trait Facts {
    /// A string variable (empty when absent).
    fn string(&self, var: Var) -> &str;
    /// An integer variable.
    fn int(&self, var: Var) -> i64;
    /// How many values `key` has in `map` (keys compare case-insensitively for
    /// headers).
    fn count(&self, map: MapVar, key: &str) -> usize;
    /// The `index`th value of `key` in `map`.
    fn value(&self, map: MapVar, key: &str, index: usize) -> Option<&str>;
    /// How many entries `map` has.
    fn map_size(&self, map: MapVar) -> usize;
    /// A variable set by `set-vars`.
    fn user_var(&self, name: &str) -> Option<&serde_json::Value>;
    /// A bool variable (the IP facts' flags); `false` when unknown.
    fn boolean(&self, _var: Var) -> bool {
        false
    }
    /// A list variable (`conn.client_ip.categories`); empty when unknown.
    fn list(&self, _var: Var) -> &[String] {
        &[]
    }
    /// What the actions that ran so far recorded.
    fn results(&self) -> &ActionResults {
        ActionResults::none()
    }
    /// The keys of `map`, each once, in order (header names lowercase); what the
    /// macros iterate over.
    fn keys(&self, _map: MapVar) -> Vec<String> {
        Vec::new()
    }
    /// A value a macro bound (inside `all`, `map`, …); none outside them.
    fn bound(&self, _slot: u16) -> Option<&serde_json::Value> {
        None
    }
}

/// A value during evaluation.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    /// A bool.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A point in time.
    Timestamp(Timestamp),
    /// A span of time.
    Duration(SignedDuration),
    /// A string, borrowed where possible.
    Str(Cow<'a, str>),
    /// Bytes.
    Bytes(Cow<'a, [u8]>),
    /// The values of one map key.
    MapValues(MapVar, Cow<'a, str>),
    /// A list literal.
    List(ListLiteral<'a>),
    /// A whole map.
    Map(MapVar),
    /// A list of strings made or kept whole (results, `split`).
    Strings(Cow<'a, [String]>),
    /// A whole string map.
    StrMap(StrMapVar),
    /// A list or map: one set-vars stored, or one made for the request (cookies).
    Json(Json<'a>),
    /// `null`.
    Null,
}

/// The items of a list literal, evaluated on demand.
#[derive(Clone, Copy, Debug)]
pub struct ListLiteral<'a>(&'a [Node]);

/// A list or map value, borrowed from the facts or made for this evaluation (boxed:
/// every [`Val`] stays small, which the common comparisons pay for).
#[derive(Clone, Debug)]
pub enum Json<'a> {
    /// Kept by the exchange (set-vars).
    Borrowed(&'a serde_json::Value),
    /// Made now (cookies, json.decode, literals).
    Owned(Box<serde_json::Value>),
}

impl Json<'_> {
    fn owned(value: serde_json::Value) -> Self {
        Json::Owned(Box::new(value))
    }
}

impl AsRef<serde_json::Value> for Json<'_> {
    fn as_ref(&self) -> &serde_json::Value {
        match self {
            Json::Borrowed(v) => v,
            Json::Owned(v) => v,
        }
    }
}

/// Why evaluation failed (a rule then does not match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// A list index beyond its end, such as `req.headers['x'][0]` without an `x`.
    IndexOutOfRange,
    /// A `vars.NAME` that was never set.
    NoSuchVar,
    /// Integer overflow.
    Overflow,
    /// A map key that is not there.
    NoSuchKey,
    /// An argument a function cannot take (a position past the end, text that is
    /// not Base64).
    BadArgument,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvalError::IndexOutOfRange => "index out of range",
            EvalError::NoSuchVar => "no such variable",
            EvalError::Overflow => "integer overflow",
            EvalError::NoSuchKey => "no such key",
            EvalError::BadArgument => "invalid argument",
        })
    }
}

type R<'a> = Result<Val<'a>, EvalError>;

fn string<'a>(v: Val<'a>) -> Cow<'a, str> {
    match v {
        Val::Str(s) => s,
        // The type checker guarantees strings where this is called.
        _ => Cow::Borrowed(""),
    }
}

fn boolean(v: &Val<'_>) -> bool {
    matches!(v, Val::Bool(true))
}

pub(crate) fn eval<'a>(node: &'a Node, f: &'a dyn Facts) -> R<'a> {
    Ok(match node {
        Node::Bool(b) => Val::Bool(*b),
        Node::Int(i) => Val::Int(*i),
        Node::Double(d) => Val::Double(*d),
        Node::Arith(op, l, r) => {
            let (l, r) = (eval(l, f)?, eval(r, f)?);
            if *op == ArithOp::Add && is_list(&l) && is_list(&r) {
                concatenated(&l, &r, f)
            } else {
                arith(*op, l, r)?
            }
        }
        Node::Str(s) => Val::Str(Cow::Borrowed(s)),
        Node::Null => Val::Null,
        // The variables most rules read go straight to the facts; the rest (made
        // here, or of other types) through `read`.
        Node::Var(var @ (Var::Method | Var::Host | Var::Path | Var::Query | Var::Scheme)) => {
            Val::Str(Cow::Borrowed(f.string(*var)))
        }
        Node::Var(var @ (Var::ContentLength | Var::StatusCode)) => Val::Int(f.int(*var)),
        Node::Var(var) => read(*var, f),
        Node::Map(map) => Val::Map(*map),
        Node::StrMap(map) => Val::StrMap(*map),
        Node::Call(func, args) => call(*func, args, f)?,
        Node::MapValues(map, key) => Val::MapValues(*map, string(eval(key, f)?)),
        Node::ListIndex(list, index) => {
            let Val::Int(i) = eval(index, f)? else {
                return Err(EvalError::IndexOutOfRange);
            };
            let i = usize::try_from(i).map_err(|_| EvalError::IndexOutOfRange)?;
            match eval(list, f)? {
                Val::MapValues(map, key) => {
                    let value = f.value(map, &key, i).ok_or(EvalError::IndexOutOfRange)?;
                    Val::Str(Cow::Borrowed(value))
                }
                Val::List(ListLiteral(items)) => {
                    let item = items.get(i).ok_or(EvalError::IndexOutOfRange)?;
                    eval(item, f)?
                }
                Val::Strings(items) => {
                    let item = items.get(i).ok_or(EvalError::IndexOutOfRange)?;
                    Val::Str(match items {
                        Cow::Borrowed(items) => Cow::Borrowed(items[i].as_str()),
                        Cow::Owned(_) => Cow::Owned(item.clone()),
                    })
                }
                _ => return Err(EvalError::IndexOutOfRange),
            }
        }
        Node::List(items) => Val::List(ListLiteral(items)),
        Node::Not(x) => Val::Bool(!boolean(&eval(x, f)?)),
        // && and || tolerate an error on the side that does not decide (CEL's
        // commutative error semantics).
        Node::And(l, r) => match eval(l, f) {
            Ok(Val::Bool(false)) => Val::Bool(false),
            Ok(lv) => Val::Bool(boolean(&lv) && boolean(&eval(r, f)?)),
            Err(e) => match eval(r, f) {
                Ok(Val::Bool(false)) => Val::Bool(false),
                _ => return Err(e),
            },
        },
        Node::Or(l, r) => match eval(l, f) {
            Ok(Val::Bool(true)) => Val::Bool(true),
            Ok(_) => Val::Bool(boolean(&eval(r, f)?)),
            Err(e) => match eval(r, f) {
                Ok(Val::Bool(true)) => Val::Bool(true),
                _ => return Err(e),
            },
        },
        Node::Cond(c, t, e) => {
            if boolean(&eval(c, f)?) {
                eval(t, f)?
            } else {
                eval(e, f)?
            }
        }
        Node::Compare(op, l, r) => {
            let (l, r) = (eval(l, f)?, eval(r, f)?);
            let ordering = match (&l, &r) {
                (Val::Str(a), Val::Str(b)) => a.as_ref().cmp(b.as_ref()),
                (Val::Int(a), Val::Int(b)) => a.cmp(b),
                (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
                // null compares equal only to null.
                (Val::Null, Val::Null) => std::cmp::Ordering::Equal,
                _ => return compare_other(*op, &l, &r, f),
            };
            Val::Bool(ordered(*op, ordering))
        }
        Node::InList(needle, hay) => {
            let needle = string(eval(needle, f)?);
            Val::Bool(match eval(hay, f)? {
                Val::MapValues(map, key) => {
                    (0..f.count(map, &key)).any(|i| f.value(map, &key, i) == Some(needle.as_ref()))
                }
                Val::List(ListLiteral(items)) => {
                    let mut found = false;
                    for item in items {
                        if string(eval(item, f)?) == needle {
                            found = true;
                            break;
                        }
                    }
                    found
                }
                Val::Strings(items) => items.iter().any(|i| *i == needle),
                _ => false,
            })
        }
        Node::InMap(key, map) => Val::Bool(f.count(*map, &string(eval(key, f)?)) > 0),
        Node::Size(x) => Val::Int(match eval(x, f)? {
            Val::Str(s) => s.chars().count() as i64,
            Val::Bytes(b) => b.len() as i64,
            Val::MapValues(map, key) => f.count(map, &key) as i64,
            Val::List(ListLiteral(items)) => items.len() as i64,
            Val::Map(map) => f.map_size(map) as i64,
            Val::Strings(items) => items.len() as i64,
            Val::Json(value) => match value.as_ref() {
                serde_json::Value::Array(items) => items.len() as i64,
                serde_json::Value::Object(map) => map.len() as i64,
                _ => 0,
            },
            Val::StrMap(map) => str_map(f.results(), map).len() as i64,
            _ => 0,
        }),
        Node::StrFn(func, t, a) => {
            let (t, a) = (string(eval(t, f)?), string(eval(a, f)?));
            Val::Bool(match func {
                StrFn::StartsWith => t.starts_with(a.as_ref()),
                StrFn::EndsWith => t.ends_with(a.as_ref()),
                StrFn::Contains => t.contains(a.as_ref()),
            })
        }
        Node::Matches(t, re) => Val::Bool(re.is_match(&string(eval(t, f)?))),
        Node::LowerAscii(t) => {
            let s = string(eval(t, f)?);
            if s.bytes().any(|b| b.is_ascii_uppercase()) {
                Val::Str(Cow::Owned(s.to_ascii_lowercase()))
            } else {
                Val::Str(s)
            }
        }
        Node::Negate(x) => match eval(x, f)? {
            Val::Int(i) => Val::Int(i.checked_neg().ok_or(EvalError::Overflow)?),
            Val::Double(d) => Val::Double(-d),
            Val::Duration(d) => Val::Duration(d.checked_neg().ok_or(EvalError::Overflow)?),
            _ => return Err(EvalError::Overflow),
        },
        _ => return rare(node, f),
    })
}

/// The cookies of the request's (`RequestHeaders`) or the response's headers.
fn cookies(f: &dyn Facts, side: MapVar) -> serde_json::Value {
    let header = match side {
        MapVar::ResponseHeaders => "set-cookie",
        _ => "cookie",
    };
    let values = (0..f.count(side, header)).filter_map(|i| f.value(side, header, i));
    match side {
        MapVar::ResponseHeaders => super::cookies::response_cookies(values),
        _ => super::cookies::request_cookies(values),
    }
}

/// `value[key]`: an item of a list by index, a member of a map by key.
fn child<'a>(value: Json<'a>, key: &Val<'_>) -> Option<Val<'a>> {
    let pick = |v: &serde_json::Value| -> Option<usize> {
        match (v, key) {
            (serde_json::Value::Array(_), Val::Int(i)) => usize::try_from(*i).ok(),
            _ => None,
        }
    };
    match value {
        Json::Borrowed(v) => match key {
            Val::Str(k) => v.get(k.as_ref()).map(Val::from_json),
            _ => pick(v).and_then(|i| v.get(i)).map(Val::from_json),
        },
        Json::Owned(mut v) => {
            let taken = match key {
                Val::Str(k) => v.as_object_mut()?.remove(k.as_ref())?,
                _ => {
                    let i = pick(&v)?;
                    let items = v.as_array_mut()?;
                    (i < items.len()).then(|| items.swap_remove(i))?
                }
            };
            Some(Val::from_owned_json(taken))
        }
    }
}

/// Comparisons of the types rules use less (times, doubles, dyn values), kept out of
/// [`eval`]'s frame.
#[inline(never)]
fn compare_other<'a>(op: Cmp, l: &Val<'_>, r: &Val<'_>, f: &dyn Facts) -> R<'a> {
    let ordering = match (l, r) {
        (Val::Timestamp(a), Val::Timestamp(b)) => a.cmp(b),
        // Text that a dyn value holds for a time (a cookie's expires, max_age).
        (Val::Str(s), Val::Timestamp(t)) | (Val::Timestamp(t), Val::Str(s)) => {
            let Some(parsed) = time::parse_timestamp(s) else {
                return Ok(Val::Bool(op == Cmp::Ne));
            };
            let o = parsed.cmp(t);
            if matches!(l, Val::Str(_)) {
                o
            } else {
                o.reverse()
            }
        }
        (Val::Str(s), Val::Duration(d)) | (Val::Duration(d), Val::Str(s)) => {
            let Some(parsed) = time::parse_duration(s) else {
                return Ok(Val::Bool(op == Cmp::Ne));
            };
            let o = parsed.cmp(d);
            if matches!(l, Val::Str(_)) {
                o
            } else {
                o.reverse()
            }
        }
        (Val::Duration(a), Val::Duration(b)) => a.cmp(b),
        (Val::Bytes(a), Val::Bytes(b)) => a.cmp(b),
        // Numbers compare across int and double; NaN compares unequal to all.
        (Val::Double(_) | Val::Int(_), Val::Double(_) | Val::Int(_)) => {
            let as_f64 = |v: &Val<'_>| match v {
                Val::Int(i) => *i as f64,
                Val::Double(d) => *d,
                _ => f64::NAN,
            };
            match as_f64(l).partial_cmp(&as_f64(r)) {
                Some(o) => o,
                None => return Ok(Val::Bool(op == Cmp::Ne)),
            }
        }
        // Lists (`conn.tls.client.issuer.country == ['US']`) and the lists and maps of
        // vars are equal or not, never ordered.
        (Val::Json(_), _)
        | (_, Val::Json(_))
        | (
            Val::Strings(_) | Val::MapValues(..) | Val::List(_),
            Val::Strings(_) | Val::MapValues(..) | Val::List(_),
        ) => {
            let equal = l.to_json(f) == r.to_json(f);
            return Ok(Val::Bool(match op {
                Cmp::Eq => equal,
                Cmp::Ne => !equal,
                _ => false,
            }));
        }
        _ => return Ok(Val::Bool(op == Cmp::Ne)),
    };
    Ok(Val::Bool(ordered(op, ordering)))
}

fn is_list(v: &Val<'_>) -> bool {
    match v {
        Val::Strings(_) | Val::MapValues(..) | Val::List(_) => true,
        Val::Json(j) => j.as_ref().is_array(),
        _ => false,
    }
}

/// `a + b` of two lists (how `map` and `filter` gather what they make).
#[inline(never)]
fn concatenated<'a>(l: &Val<'_>, r: &Val<'_>, f: &dyn Facts) -> Val<'a> {
    let items = |v: &Val<'_>| match v.to_json(f) {
        serde_json::Value::Array(items) => items,
        _ => Vec::new(),
    };
    let mut all = items(l);
    all.extend(items(r));
    Val::from_owned_json(serde_json::Value::Array(all))
}

/// Whether `ordering` satisfies `op`.
fn ordered(op: Cmp, ordering: std::cmp::Ordering) -> bool {
    match op {
        Cmp::Eq => ordering.is_eq(),
        Cmp::Ne => ordering.is_ne(),
        Cmp::Lt => ordering.is_lt(),
        Cmp::Le => ordering.is_le(),
        Cmp::Gt => ordering.is_gt(),
        Cmp::Ge => ordering.is_ge(),
    }
}

/// The nodes of values made per evaluation (string maps, CIDR sets, vars, dyn
/// values, literals, cookies): kept out of [`eval`] so that its frame, which every
/// step of the common comparisons pays for, stays small.
#[inline(never)]
fn rare<'a>(node: &'a Node, f: &'a dyn Facts) -> R<'a> {
    Ok(match node {
        Node::StrMapValue(map, key) => {
            let key = string(eval(key, f)?);
            let value = str_map(f.results(), *map)
                .iter()
                .find(|(k, _)| *k == key)
                .ok_or(EvalError::NoSuchKey)?;
            Val::Str(Cow::Borrowed(value.1.as_str()))
        }
        Node::InStrMap(key, map) => {
            let key = string(eval(key, f)?);
            Val::Bool(str_map(f.results(), *map).iter().any(|(k, _)| *k == key))
        }
        Node::InCidrs(ip, ranges) => {
            let ip = string(eval(ip, f)?);
            Val::Bool(
                ip.trim()
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ranges.iter().any(|c| c.contains(ip))),
            )
        }
        Node::UserVar(name, fields) => {
            let mut value = f.user_var(name).ok_or(EvalError::NoSuchVar)?;
            for field in fields.iter() {
                value = value.get(field.as_ref()).ok_or(EvalError::NoSuchKey)?;
            }
            Val::from_json(value)
        }
        Node::HasUserVar(name, fields) => Val::Bool(
            f.user_var(name)
                .and_then(|v| fields.iter().try_fold(v, |v, field| v.get(field.as_ref())))
                .is_some(),
        ),
        Node::DynIndex(base, key) => {
            let Val::Json(value) = eval(base, f)? else {
                return Err(EvalError::NoSuchKey);
            };
            child(value, &eval(key, f)?).ok_or(EvalError::NoSuchKey)?
        }
        Node::AsType(want, x) => {
            let v = eval(x, f)?;
            let fits = matches!(
                (want, &v),
                (super::Type::String, Val::Str(_))
                    | (super::Type::Int, Val::Int(_))
                    | (super::Type::Double, Val::Double(_))
                    | (super::Type::Bool, Val::Bool(_))
                    | (super::Type::Null, Val::Null)
                    | (super::Type::List, Val::Json(_))
            );
            if !fits {
                return Err(EvalError::BadArgument);
            }
            v
        }
        Node::Literal(values, keys) => {
            use serde_json::Value;
            let mut items = Vec::with_capacity(values.len());
            for v in values {
                items.push(eval(v, f)?.to_json(f));
            }
            Val::Json(Json::owned(match keys {
                None => Value::Array(items),
                Some(keys) => {
                    let mut map = serde_json::Map::new();
                    for (k, v) in keys.iter().zip(items) {
                        map.insert(string(eval(k, f)?).into_owned(), v);
                    }
                    Value::Object(map)
                }
            }))
        }
        Node::Cookies(side) => Val::Json(Json::owned(cookies(f, *side))),
        Node::Cookie(side, name) => {
            let name = string(eval(name, f)?);
            let mut all = cookies(f, *side);
            let first = all
                .get_mut(name.as_ref())
                .and_then(|list| list.as_array_mut())
                .filter(|list| !list.is_empty())
                .map(|list| list.swap_remove(0))
                .ok_or(EvalError::NoSuchKey)?;
            Val::from_owned_json(first)
        }
        Node::Bound(slot, fields) => {
            let mut value = f.bound(*slot).ok_or(EvalError::NoSuchVar)?;
            for field in fields.iter() {
                value = value.get(field.as_ref()).ok_or(EvalError::NoSuchKey)?;
            }
            Val::from_json(value)
        }
        Node::Comprehension(c) => comprehension(c, f)?,
        Node::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
        Node::NotStrictlyFalse(x) => Val::Bool(!matches!(eval(x, f), Ok(Val::Bool(false)))),
        Node::HasCookie(side, name) => {
            let name = string(eval(name, f)?);
            Val::Bool(cookies(f, *side).get(name.as_ref()).is_some())
        }
        Node::InDyn(needle, hay) => {
            let needle = eval(needle, f)?;
            let Val::Json(hay) = eval(hay, f)? else {
                return Ok(Val::Bool(false));
            };
            Val::Bool(match hay.as_ref() {
                serde_json::Value::Array(items) => {
                    items.iter().any(|item| needle.to_json(f) == *item)
                }
                serde_json::Value::Object(map) => match &needle {
                    Val::Str(key) => map.contains_key(key.as_ref()),
                    _ => false,
                },
                _ => false,
            })
        }
        // Every other node is evaluated by eval.
        _ => unreachable!("eval handles {node:?}"),
    })
}

/// A scalar variable: read from the facts, or made here from them (the whole URL,
/// media types, the time, action results).
#[inline(never)]
fn read<'a>(var: Var, f: &'a dyn Facts) -> Val<'a> {
    let borrowed = |s: &'a str| Val::Str(Cow::Borrowed(s));
    match var {
        Var::Ip(
            IpVar::LocationIsEu | IpVar::RegisteredIsEu | IpVar::IsTorNode | IpVar::IsOnBlocklist,
        ) => Val::Bool(f.boolean(var)),
        Var::Ip(IpVar::AsNumber) => Val::Int(f.int(var)),
        Var::Ip(IpVar::Categories) => Val::Strings(Cow::Borrowed(f.list(var))),
        Var::ConnTsStart => timestamp_ns(f.int(var)),
        Var::UserAgentField(field) => user_agent_field(f.string(Var::UserAgent), field),
        Var::Tls(tls) => match tls.ty() {
            Type::Bool => Val::Bool(f.boolean(var)),
            Type::List => Val::Strings(Cow::Borrowed(f.list(var))),
            Type::Timestamp => timestamp_ns(f.int(var)),
            _ => borrowed(f.string(var)),
        },
        Var::ContentLength
        | Var::StatusCode
        | Var::ClientPort
        | Var::ServerPort
        | Var::ResContentLength
        | Var::EndpointPort => Val::Int(f.int(var)),
        Var::Url => Val::Str(Cow::Owned(format!(
            "{}://{}{}",
            f.string(Var::Scheme),
            f.string(Var::Authority),
            target(f)
        ))),
        Var::Uri => Val::Str(Cow::Owned(target(f))),
        Var::UrlPort => {
            // The authority's port: after the last colon that is not inside brackets.
            let authority = f.string(Var::Authority);
            let port = authority
                .rsplit_once(':')
                .filter(|(host, _)| !host.ends_with(']') || authority.starts_with('['))
                .filter(|(_, port)| !port.contains(']'))
                .and_then(|(_, port)| port.parse::<u16>().ok());
            Val::Int(port.map_or(0, i64::from))
        }
        Var::UserPassword => borrowed(""),
        Var::ReqContentType => borrowed(media_type(f.string(Var::ReqContentTypeRaw))),
        Var::ResContentType => borrowed(media_type(f.string(Var::ResContentTypeRaw))),
        Var::TimeNow => Val::Str(Cow::Owned(
            crate::units::Rfc3339::seconds(std::time::SystemTime::now()).to_string(),
        )),
        Var::Result(r) => {
            let results = f.results();
            match r {
                ResultVar::RestrictIpsAction => borrowed(results.restrict_ips.action),
                ResultVar::RestrictIpsMatchedCidr => borrowed(&results.restrict_ips.matched_cidr),
                ResultVar::BasicAuthPresented => Val::Bool(results.basic_auth.presented),
                ResultVar::BasicAuthUsername => borrowed(&results.basic_auth.username),
                ResultVar::BasicAuthAuthorized => Val::Bool(results.basic_auth.authorized),
                ResultVar::RateLimitBucketKey => borrowed(&results.rate_limit.bucket_key),
                ResultVar::RateLimitLimited => Val::Bool(results.rate_limit.limited),
                ResultVar::RedirectUrl => borrowed(&results.redirect.url),
                ResultVar::RedirectMatches => {
                    Val::Strings(Cow::Borrowed(&results.redirect.matches))
                }
                ResultVar::RedirectErrorCode => borrowed(results.redirect.error.0),
                ResultVar::RedirectErrorMessage => borrowed(&results.redirect.error.1),
                ResultVar::UrlRewriteUrl => borrowed(&results.url_rewrite.url),
                ResultVar::UrlRewriteMatches => {
                    Val::Strings(Cow::Borrowed(&results.url_rewrite.matches))
                }
                ResultVar::UrlRewriteErrorCode => borrowed(results.url_rewrite.error.0),
                ResultVar::UrlRewriteErrorMessage => borrowed(&results.url_rewrite.error.1),
                ResultVar::HeadersRemoved => Val::Strings(Cow::Borrowed(&results.headers_removed)),
                ResultVar::ForwardUrl => borrowed(&results.forward_url),
                ResultVar::NoError => borrowed(""),
            }
        }
        _ => borrowed(f.string(var)),
    }
}

/// A field of the User-Agent header `header`.
#[inline(never)]
fn user_agent_field(header: &str, field: UaField) -> Val<'static> {
    let ua = super::user_agent::parse(header);
    let text = |s: String| Val::Str(Cow::Owned(s));
    match field {
        UaField::Name => text(ua.name),
        UaField::Version => text(ua.version),
        UaField::Os => text(ua.os),
        UaField::OsVersion => text(ua.os_version),
        UaField::Device => text(ua.device),
        UaField::Url => text(ua.url),
        UaField::IsMobile => Val::Bool(ua.mobile),
        UaField::IsTablet => Val::Bool(ua.tablet),
        UaField::IsDesktop => Val::Bool(ua.desktop),
        UaField::IsBot => Val::Bool(ua.bot),
    }
}

/// A timestamp the facts give as nanoseconds since the Unix epoch.
fn timestamp_ns(ns: i64) -> Val<'static> {
    Val::Timestamp(Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// `/path?query`.
fn target(f: &dyn Facts) -> String {
    let (path, query) = (f.string(Var::Path), f.string(Var::Query));
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The media type of a Content-Type value: what comes before its parameters.
fn media_type(raw: &str) -> &str {
    raw.split(';').next().unwrap_or("").trim()
}

fn str_map(results: &ActionResults, map: StrMapVar) -> &[(String, String)] {
    match map {
        StrMapVar::HeadersAdded => &results.headers_added,
        StrMapVar::LogMetadata => &results.log_metadata,
    }
}

/// The items of a list value, as text.
fn items<'a>(v: Val<'a>, f: &'a dyn Facts) -> Result<Vec<Cow<'a, str>>, EvalError> {
    Ok(match v {
        Val::MapValues(map, key) => (0..f.count(map, &key))
            .filter_map(|i| f.value(map, &key, i).map(Cow::Borrowed))
            .collect(),
        Val::List(ListLiteral(nodes)) => {
            let mut out = Vec::with_capacity(nodes.len());
            for node in nodes {
                out.push(string(eval(node, f)?));
            }
            out
        }
        Val::Strings(Cow::Borrowed(items)) => {
            items.iter().map(|s| Cow::Borrowed(s.as_str())).collect()
        }
        Val::Strings(Cow::Owned(items)) => items.into_iter().map(Cow::Owned).collect(),
        Val::Json(value) => match value.as_ref() {
            serde_json::Value::Array(list) => list
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Cow::Owned(s.clone()),
                    other => Cow::Owned(other.to_string()),
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    })
}

fn int(v: &Val<'_>) -> i64 {
    match v {
        Val::Int(i) => *i,
        _ => 0,
    }
}

/// A character position of `s` as a byte offset; `None` past its end.
fn char_offset(s: &str, position: i64) -> Option<usize> {
    let position = usize::try_from(position).ok()?;
    if position == s.chars().count() {
        return Some(s.len());
    }
    s.char_indices().nth(position).map(|(at, _)| at)
}

/// Characters before byte offset `at`.
fn chars_before(s: &str, at: usize) -> i64 {
    s[..at].chars().count() as i64
}

/// Runs a function of [`super::FUNCTIONS`]; the type checker made `args` match its
/// signature (receiver first).
#[inline(never)]
fn call<'a>(func: Func, args: &'a [Node], f: &'a dyn Facts) -> R<'a> {
    let mut vals = Vec::with_capacity(args.len());
    for arg in args {
        vals.push(eval(arg, f)?);
    }
    let mut vals = vals.into_iter();
    let mut next = || vals.next().unwrap_or(Val::Null);
    let owned = |s: String| Ok(Val::Str(Cow::Owned(s)));
    match func {
        Func::Lower => owned(string(next()).to_lowercase()),
        Func::Upper => owned(string(next()).to_uppercase()),
        Func::UpperAscii => owned(string(next()).to_ascii_uppercase()),
        Func::Trim => match string(next()) {
            Cow::Borrowed(s) => Ok(Val::Str(Cow::Borrowed(s.trim()))),
            Cow::Owned(s) => owned(s.trim().to_string()),
        },
        Func::Reverse => owned(string(next()).chars().rev().collect()),
        Func::CharAt => {
            let s = string(next());
            let at = char_offset(&s, int(&next())).ok_or(EvalError::BadArgument)?;
            owned(s[at..].chars().next().map(String::from).unwrap_or_default())
        }
        Func::IndexOf => {
            let (s, needle) = (string(next()), string(next()));
            let from = match next() {
                Val::Int(i) => char_offset(&s, i).ok_or(EvalError::BadArgument)?,
                _ => 0,
            };
            Ok(Val::Int(
                s[from..]
                    .find(needle.as_ref())
                    .map_or(-1, |at| chars_before(&s, from + at)),
            ))
        }
        Func::LastIndexOf => {
            let (s, needle) = (string(next()), string(next()));
            // The optional position is the last one a match may start at.
            let end = match next() {
                Val::Int(i) => {
                    let start = char_offset(&s, i).ok_or(EvalError::BadArgument)?;
                    (start + needle.len()).min(s.len())
                }
                _ => s.len(),
            };
            let end = (0..=end)
                .rev()
                .find(|e| s.is_char_boundary(*e))
                .unwrap_or(0);
            Ok(Val::Int(
                s[..end]
                    .rfind(needle.as_ref())
                    .map_or(-1, |at| chars_before(&s, at)),
            ))
        }
        Func::Substring => {
            let s = string(next());
            let start = char_offset(&s, int(&next())).ok_or(EvalError::BadArgument)?;
            let end = match next() {
                Val::Int(i) => char_offset(&s, i).ok_or(EvalError::BadArgument)?,
                _ => s.len(),
            };
            if end < start {
                return Err(EvalError::BadArgument);
            }
            owned(s[start..end].to_string())
        }
        Func::Replace => {
            let (s, from, to) = (string(next()), string(next()), string(next()));
            match next() {
                Val::Int(n) if n >= 0 => owned(s.replacen(from.as_ref(), &to, n as usize)),
                _ => owned(s.replace(from.as_ref(), &to)),
            }
        }
        Func::Split => {
            let s = string(next());
            let parts: Vec<String> = match next() {
                // Without a separator, on runs of whitespace.
                Val::Null => s.split_whitespace().map(String::from).collect(),
                sep => {
                    let sep = string(sep);
                    let all = s.split(sep.as_ref()).map(String::from);
                    match next() {
                        // At most n parts: the docs' examples cut the list there.
                        Val::Int(n) if n >= 0 => all.take(n as usize).collect(),
                        _ => all.collect(),
                    }
                }
            };
            Ok(Val::Strings(Cow::Owned(parts)))
        }
        Func::Join => {
            let list = items(next(), f)?;
            let sep = match next() {
                Val::Null => Cow::Borrowed(""),
                sep => string(sep),
            };
            owned(list.join(sep.as_ref()))
        }
        Func::EncodeBase64 => {
            use base64::Engine;
            owned(base64::engine::general_purpose::STANDARD.encode(string(next()).as_bytes()))
        }
        Func::DecodeBase64 => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string(next()).as_bytes())
                .map_err(|_| EvalError::BadArgument)?;
            owned(String::from_utf8(bytes).map_err(|_| EvalError::BadArgument)?)
        }
        Func::EscapeUrl => owned(query_escape(&string(next()))),
        Func::UnescapeUrl => owned(query_unescape(&string(next())).ok_or(EvalError::BadArgument)?),
        Func::IsPrivateIp => Ok(Val::Bool(matches!(
            string(next()).parse::<std::net::IpAddr>(),
            Ok(std::net::IpAddr::V4(ip)) if ip.is_private()
        ))),
        Func::IsUrl => Ok(Val::Bool(is_url(&string(next())))),
        Func::Format => {
            let template = string(next());
            let serde_json::Value::Array(args) = next().to_json(f) else {
                return Err(EvalError::BadArgument);
            };
            owned(super::strings::format(&template, &args).ok_or(EvalError::BadArgument)?)
        }
        Func::Quote => owned(super::strings::quote(&string(next()))),
        Func::ToBytes => Ok(match next() {
            Val::Str(Cow::Borrowed(s)) => Val::Bytes(Cow::Borrowed(s.as_bytes())),
            Val::Str(Cow::Owned(s)) => Val::Bytes(Cow::Owned(s.into_bytes())),
            bytes @ Val::Bytes(_) => bytes,
            _ => return Err(EvalError::BadArgument),
        }),
        Func::Base64Encode => {
            use base64::Engine;
            let Val::Bytes(b) = next() else {
                return Err(EvalError::BadArgument);
            };
            owned(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Func::Base64Decode => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string(next()).as_bytes())
                .map_err(|_| EvalError::BadArgument)?;
            Ok(Val::Bytes(Cow::Owned(bytes)))
        }
        Func::ParseUrl => Ok(Val::from_owned_json(
            super::strings::parse_url(&string(next())).ok_or(EvalError::BadArgument)?,
        )),
        Func::InCidrRange => {
            let (ip, cidr) = (string(next()), string(next()));
            Ok(Val::Bool(in_ranges(&ip, [cidr])))
        }
        Func::InCidrRanges => {
            let ip = string(next());
            Ok(Val::Bool(in_ranges(&ip, items(next(), f)?)))
        }
        Func::ToInt | Func::ToUint => {
            let i = match next() {
                Val::Int(i) => i,
                Val::Double(d) if d.is_finite() && d.abs() < 9.2e18 => d.trunc() as i64,
                Val::Str(s) => s.trim().parse().map_err(|_| EvalError::BadArgument)?,
                Val::Timestamp(t) => t.as_second(),
                _ => return Err(EvalError::BadArgument),
            };
            if func == Func::ToUint && i < 0 {
                return Err(EvalError::BadArgument);
            }
            Ok(Val::Int(i))
        }
        Func::ToDouble => Ok(Val::Double(match next() {
            Val::Int(i) => i as f64,
            Val::Double(d) => d,
            Val::Str(s) => s.trim().parse().map_err(|_| EvalError::BadArgument)?,
            _ => return Err(EvalError::BadArgument),
        })),
        Func::ToString => {
            let v = next();
            if let Val::Bytes(b) = v {
                return owned(
                    String::from_utf8(b.into_owned()).map_err(|_| EvalError::BadArgument)?,
                );
            }
            let mut out = String::new();
            v.write_to(f, &mut out);
            owned(out)
        }
        Func::ToTimestamp => Ok(Val::Timestamp(match next() {
            Val::Timestamp(t) => t,
            Val::Str(s) => time::parse_timestamp(&s).ok_or(EvalError::BadArgument)?,
            Val::Int(secs) => Timestamp::from_second(secs).map_err(|_| EvalError::BadArgument)?,
            _ => return Err(EvalError::BadArgument),
        })),
        Func::ToDuration => Ok(Val::Duration(match next() {
            Val::Duration(d) => d,
            Val::Str(s) => time::parse_duration(&s).ok_or(EvalError::BadArgument)?,
            _ => return Err(EvalError::BadArgument),
        })),
        Func::RandDouble => Ok(Val::Double(random() as f64 / (1u64 << 53) as f64)),
        Func::RandInt => {
            let (min, max) = match (next(), next()) {
                (Val::Int(min), Val::Int(max)) => (min, max),
                _ => (0, 1),
            };
            if min < 0 || max < min {
                return Err(EvalError::BadArgument);
            }
            // Both ends included, as `rand.int() == 1` shows.
            let span = (max - min) as u64 + 1;
            Ok(Val::Int(min + (random() % span) as i64))
        }
        Func::TimestampField(field) => {
            let Val::Timestamp(at) = next() else {
                return Err(EvalError::BadArgument);
            };
            let zone = match next() {
                Val::Str(name) => time::zone(&name).ok_or(EvalError::BadArgument)?,
                _ => jiff::tz::TimeZone::UTC,
            };
            Ok(Val::Int(time::field(at, &zone, field)))
        }
        Func::DurationField(field) => match next() {
            Val::Duration(d) => Ok(Val::Int(
                time::duration_field(d, field).ok_or(EvalError::BadArgument)?,
            )),
            _ => Err(EvalError::BadArgument),
        },
        Func::JsonDecode => {
            let text = string(next());
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|_| EvalError::BadArgument)?;
            Ok(Val::from_owned_json(value))
        }
        Func::JsonEncode => owned(next().to_json(f).to_string()),
        Func::IsJson => Ok(Val::Bool(
            serde_json::from_str::<serde_json::Value>(&string(next())).is_ok(),
        )),
        Func::QueryDecode => {
            let text = string(next());
            let mut map = serde_json::Map::new();
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = query_unescape(k).ok_or(EvalError::BadArgument)?;
                let v = query_unescape(v).ok_or(EvalError::BadArgument)?;
                // The first value of a key, as the docs compare them as strings.
                map.entry(k).or_insert(serde_json::Value::String(v));
            }
            Ok(Val::Json(Json::owned(serde_json::Value::Object(map))))
        }
        Func::QueryEncode => {
            let serde_json::Value::Object(map) = next().to_json(f) else {
                return Err(EvalError::BadArgument);
            };
            let mut out = Vec::with_capacity(map.len());
            for (k, v) in &map {
                let values = match v {
                    serde_json::Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for v in values {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.push(format!("{}={}", query_escape(k), query_escape(&v)));
                }
            }
            owned(out.join("&"))
        }
        Func::IsQueryString => {
            let text = string(next());
            Ok(Val::Bool(text.split('&').all(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !k.is_empty() && query_unescape(k).is_some() && query_unescape(v).is_some()
            })))
        }
        Func::Hash(digest) => {
            let text = string(next());
            let bytes = super::digest::digest(digest, text.as_bytes());
            match next() {
                Val::Str(format) if format == "base64" => {
                    use base64::Engine;
                    owned(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                Val::Str(format) if format != "hex" => Err(EvalError::BadArgument),
                _ => owned(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            }
        }
        Func::Slice => {
            let list = json_list(next(), f)?;
            let (start, end) = (int(&next()), int(&next()));
            let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
                return Err(EvalError::BadArgument);
            };
            if start > end || end > list.len() {
                return Err(EvalError::BadArgument);
            }
            Ok(Val::from_owned_json(serde_json::Value::Array(
                list[start..end].to_vec(),
            )))
        }
        Func::Flatten => {
            let list = json_list(next(), f)?;
            let depth = match next() {
                Val::Int(d) if d < 0 => return Err(EvalError::BadArgument),
                Val::Int(d) => d as usize,
                _ => 1,
            };
            Ok(Val::from_owned_json(serde_json::Value::Array(flatten(
                list, depth,
            ))))
        }
        Func::Sort => {
            let mut list = json_list(next(), f)?;
            let kind = |v: &serde_json::Value| match v {
                serde_json::Value::Number(_) => Some(0),
                serde_json::Value::String(_) => Some(1),
                serde_json::Value::Bool(_) => Some(2),
                _ => None,
            };
            let first = list.first().and_then(kind);
            if list.iter().any(|v| kind(v).is_none() || kind(v) != first) {
                return Err(EvalError::BadArgument);
            }
            list.sort_by(|a, b| match (a, b) {
                (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x
                    .as_f64()
                    .partial_cmp(&y.as_f64())
                    .unwrap_or(std::cmp::Ordering::Equal),
                (serde_json::Value::String(x), serde_json::Value::String(y)) => x.cmp(y),
                (serde_json::Value::Bool(x), serde_json::Value::Bool(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            });
            Ok(Val::from_owned_json(serde_json::Value::Array(list)))
        }
        Func::Distinct => {
            let list = json_list(next(), f)?;
            let mut seen: Vec<serde_json::Value> = Vec::with_capacity(list.len());
            for item in list {
                if !seen.contains(&item) {
                    seen.push(item);
                }
            }
            Ok(Val::from_owned_json(serde_json::Value::Array(seen)))
        }
        Func::Range => {
            let n = int(&next());
            if !(0..=1_000_000).contains(&n) {
                return Err(EvalError::BadArgument);
            }
            Ok(Val::from_owned_json(serde_json::Value::from(
                (0..n).collect::<Vec<_>>(),
            )))
        }
        Func::BasicAuthEncode => {
            use base64::Engine;
            let (user, password) = (string(next()), string(next()));
            owned(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ))
        }
    }
}

/// `l op r` over the types the compiler allowed.
#[inline(never)]
fn arith<'a>(op: ArithOp, l: Val<'a>, r: Val<'a>) -> R<'a> {
    use ArithOp::*;
    let overflow = EvalError::Overflow;
    Ok(match (l, r) {
        (Val::Int(a), Val::Int(b)) => Val::Int(
            match op {
                Add => a.checked_add(b),
                Sub => a.checked_sub(b),
                Mul => a.checked_mul(b),
                Div => a.checked_div(b),
                Rem => a.checked_rem(b),
            }
            .ok_or(overflow)?,
        ),
        (Val::Double(a), Val::Double(b)) => Val::Double(match op {
            Add => a + b,
            Sub => a - b,
            Mul => a * b,
            Div => a / b,
            Rem => a % b,
        }),
        (Val::Str(a), Val::Str(b)) => Val::Str(Cow::Owned(format!("{a}{b}"))),
        (Val::Timestamp(a), Val::Timestamp(b)) => Val::Duration(a.duration_since(b)),
        (Val::Timestamp(t), Val::Duration(d)) | (Val::Duration(d), Val::Timestamp(t)) => {
            let d = if op == Sub {
                d.checked_neg().ok_or(overflow)?
            } else {
                d
            };
            Val::Timestamp(t.checked_add(d).map_err(|_| overflow)?)
        }
        (Val::Duration(a), Val::Duration(b)) => Val::Duration(
            if op == Sub {
                a.checked_sub(b)
            } else {
                a.checked_add(b)
            }
            .ok_or(overflow)?,
        ),
        _ => return Err(overflow),
    })
}

/// 53 random bits (xorshift64*, per thread, seeded from the clock and the thread):
/// `rand.*` is for sampling and splitting traffic, not for secrets.
fn random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let clock = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let here = &clock as *const u64 as u64;
            (clock ^ here.rotate_left(32)) | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11
    })
}

/// A list value's items (an error for anything but a list).
fn json_list(v: Val<'_>, f: &dyn Facts) -> Result<Vec<serde_json::Value>, EvalError> {
    match v.to_json(f) {
        serde_json::Value::Array(items) => Ok(items),
        _ => Err(EvalError::BadArgument),
    }
}

/// `depth` levels of nested lists spliced into their parent.
fn flatten(list: Vec<serde_json::Value>, depth: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item {
            serde_json::Value::Array(inner) if depth > 0 => out.extend(flatten(inner, depth - 1)),
            other => out.push(other),
        }
    }
    out
}

/// Whether `ip` lies in one of `cidrs`; a range that does not parse is skipped, and
/// an address that does not parse is in none (the macros never fail).
fn in_ranges<'c>(ip: &str, cidrs: impl IntoIterator<Item = Cow<'c, str>>) -> bool {
    let Ok(ip) = ip.trim().parse::<std::net::IpAddr>() else {
        return false;
    };
    cidrs
        .into_iter()
        .any(|c| Cidr::parse(&c).is_ok_and(|c| c.contains(ip)))
}

/// Percent-encoding as in a query component: letters, digits and `-_.~` stay, a
/// space becomes `+`, every other byte `%XX` (the docs' `i;md/r/$y` →
/// `i%3Bmd%2Fr%2F%24y`).
fn query_escape(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The inverse of [`query_escape`]; `None` for a malformed escape or bytes that are
/// not UTF-8.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A URL with a scheme and a host (`https://ngrok.com`), or an absolute path.
fn is_url(s: &str) -> bool {
    if s.contains(char::is_whitespace) || s.is_empty() {
        return false;
    }
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            scheme_ok && !host.is_empty()
        }
        None => s.starts_with('/'),
    }
}

impl<'a> Val<'a> {
    /// A value set-vars stored, as expressions see it.
    pub fn from_json(value: &'a serde_json::Value) -> Val<'a> {
        use serde_json::Value;
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(Json::Borrowed(value)),
        }
    }

    /// A value made for this request, as expressions see it.
    pub fn from_owned_json(value: serde_json::Value) -> Val<'a> {
        use serde_json::Value;
        match value {
            Value::String(s) => Val::Str(Cow::Owned(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(Json::owned(value)),
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
        }
    }

    /// The value as set-vars stores it: its type kept (numbers, bools, null,
    /// strings, lists of strings); timestamps and durations as their text.
    pub fn to_json(&self, f: &dyn Facts) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => Value::from(*i),
            Val::Double(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            Val::Json(v) => v.as_ref().clone(),
            Val::Strings(items) => Value::from(items.to_vec()),
            Val::MapValues(map, key) => Value::from(
                (0..f.count(*map, key))
                    .filter_map(|i| f.value(*map, key, i).map(String::from))
                    .collect::<Vec<_>>(),
            ),
            Val::List(ListLiteral(nodes)) => Value::Array(
                nodes
                    .iter()
                    .map(|n| eval(n, f).map_or(Value::Null, |v| v.to_json(f)))
                    .collect(),
            ),
            other => {
                let mut out = String::new();
                other.write_to(f, &mut out);
                Value::String(out)
            }
        }
    }
}

impl Val<'_> {
    /// Writes the value as text (for `${…}` interpolation).
    pub fn write_to(&self, f: &dyn Facts, out: &mut String) {
        use std::fmt::Write;
        match self {
            Val::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Val::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Val::Double(d) => {
                let _ = write!(out, "{d}");
            }
            Val::Timestamp(t) => {
                let _ = write!(out, "{t}");
            }
            Val::Duration(d) => out.push_str(&time::duration_text(*d)),
            Val::Str(s) => out.push_str(s),
            Val::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
            Val::MapValues(map, key) => {
                for i in 0..f.count(*map, key) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(f.value(*map, key, i).unwrap_or(""));
                }
            }
            Val::Strings(items) => out.push_str(&items.join(", ")),
            Val::Json(value) => out.push_str(&value.as_ref().to_string()),
            Val::List(_) | Val::Map(_) | Val::StrMap(_) | Val::Null => {}
        }
    }
}

/// Runs a macro's comprehension: each element in turn, while the condition holds;
/// what it makes is owned, so it outlives the scope of its bound values.
#[inline(never)]
fn comprehension<'a>(c: &'a Comprehension, f: &'a dyn Facts) -> R<'a> {
    use serde_json::Value;
    let range = eval(&c.range, f)?;
    let items: Vec<Value> = match range {
        // Headers and query parameters: their names.
        Val::Map(map) => f.keys(map).into_iter().map(Value::String).collect(),
        range => match range.to_json(f) {
            Value::Array(items) => items,
            Value::Object(map) => map.into_iter().map(|(k, _)| Value::String(k)).collect(),
            _ => return Err(EvalError::BadArgument),
        },
    };
    let mut accu = eval(&c.init, f)?.to_json(f);
    for item in items {
        let scope = Scope {
            outer: f,
            slots: [(c.iter, item), (c.accu, accu)],
        };
        let go_on = matches!(eval(&c.cond, &scope), Ok(Val::Bool(true)));
        let next = if go_on {
            Some(eval(&c.step, &scope)?.to_json(&scope))
        } else {
            None
        };
        let [_, (_, before)] = scope.slots;
        match next {
            Some(next) => accu = next,
            None => {
                accu = before;
                break;
            }
        }
    }
    let scope = Scope {
        outer: f,
        slots: [(u16::MAX, Value::Null), (c.accu, accu)],
    };
    let result = eval(&c.result, &scope)?.to_json(&scope);
    Ok(Val::from_owned_json(result))
}

/// The facts inside a comprehension: the outer ones, and the two bound values.
struct Scope<'a> {
    outer: &'a dyn Facts,
    slots: [(u16, serde_json::Value); 2],
}

impl Facts for Scope<'_> {
    fn string(&self, var: Var) -> &str {
        self.outer.string(var)
    }
    fn int(&self, var: Var) -> i64 {
        self.outer.int(var)
    }
    fn count(&self, map: MapVar, key: &str) -> usize {
        self.outer.count(map, key)
    }
    fn value(&self, map: MapVar, key: &str, index: usize) -> Option<&str> {
        self.outer.value(map, key, index)
    }
    fn map_size(&self, map: MapVar) -> usize {
        self.outer.map_size(map)
    }
    fn keys(&self, map: MapVar) -> Vec<String> {
        self.outer.keys(map)
    }
    fn user_var(&self, name: &str) -> Option<&serde_json::Value> {
        self.outer.user_var(name)
    }
    fn boolean(&self, var: Var) -> bool {
        self.outer.boolean(var)
    }
    fn list(&self, var: Var) -> &[String] {
        self.outer.list(var)
    }
    fn results(&self) -> &ActionResults {
        self.outer.results()
    }
    fn bound(&self, slot: u16) -> Option<&serde_json::Value> {
        match self.slots.iter().find(|(s, _)| *s == slot) {
            Some((_, value)) => Some(value),
            None => self.outer.bound(slot),
        }
    }
}
