//! Evaluation of compiled expressions against what a request offers.

use std::borrow::Cow;

use super::{Cmp, MapVar, Node, StrFn, Var};

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
    fn user_var(&self, name: &str) -> Option<&str>;
}

/// A value during evaluation.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    /// A bool.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string, borrowed where possible.
    Str(Cow<'a, str>),
    /// The values of one map key.
    MapValues(MapVar, Cow<'a, str>),
    /// A list literal.
    List(ListLiteral<'a>),
    /// A whole map.
    Map(MapVar),
    /// `null`.
    Null,
}

/// The items of a list literal, evaluated on demand.
#[derive(Clone, Copy, Debug)]
pub struct ListLiteral<'a>(&'a [Node]);

/// Why evaluation failed (a rule then does not match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// A list index beyond its end, such as `req.headers['x'][0]` without an `x`.
    IndexOutOfRange,
    /// A `vars.NAME` that was never set.
    NoSuchVar,
    /// Integer overflow.
    Overflow,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvalError::IndexOutOfRange => "index out of range",
            EvalError::NoSuchVar => "no such variable",
            EvalError::Overflow => "integer overflow",
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
        Node::Str(s) => Val::Str(Cow::Borrowed(s)),
        Node::Null => Val::Null,
        Node::Var(var) => match var {
            Var::ContentLength | Var::StatusCode | Var::ClientPort | Var::ServerPort => {
                Val::Int(f.int(*var))
            }
            _ => Val::Str(Cow::Borrowed(f.string(*var))),
        },
        Node::Map(map) => Val::Map(*map),
        Node::UserVar(name) => {
            Val::Str(Cow::Borrowed(f.user_var(name).ok_or(EvalError::NoSuchVar)?))
        }
        Node::HasUserVar(name) => Val::Bool(f.user_var(name).is_some()),
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
                _ => return Ok(Val::Bool(*op == Cmp::Ne)),
            };
            Val::Bool(match op {
                Cmp::Eq => ordering.is_eq(),
                Cmp::Ne => ordering.is_ne(),
                Cmp::Lt => ordering.is_lt(),
                Cmp::Le => ordering.is_le(),
                Cmp::Gt => ordering.is_gt(),
                Cmp::Ge => ordering.is_ge(),
            })
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
                _ => false,
            })
        }
        Node::InMap(key, map) => Val::Bool(f.count(*map, &string(eval(key, f)?)) > 0),
        Node::Size(x) => Val::Int(match eval(x, f)? {
            Val::Str(s) => s.chars().count() as i64,
            Val::MapValues(map, key) => f.count(map, &key) as i64,
            Val::List(ListLiteral(items)) => items.len() as i64,
            Val::Map(map) => f.map_size(map) as i64,
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
            _ => return Err(EvalError::Overflow),
        },
    })
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
            Val::Str(s) => out.push_str(s),
            Val::MapValues(map, key) => {
                for i in 0..f.count(*map, key) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(f.value(*map, key, i).unwrap_or(""));
                }
            }
            Val::List(_) | Val::Map(_) | Val::Null => {}
        }
    }
}
