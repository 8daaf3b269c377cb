//! Policy expressions: CEL (SPEC §4), parsed with the `cel` crate, then type-checked
//! and compiled here into a small tree that evaluates against a request without
//! allocating for the common cases (comparisons of method, path, host and headers).
//!
//! The language is the subset SPEC §4 lists: literals, `== != < <= > >=`, `&& || !`,
//! `?:`, `in` (lists and maps), `size()`, the string functions `startsWith endsWith
//! contains matches lowerAscii`, indexing, `has()`. Variables are typed; a variable
//! that does not exist in the phase (such as `res.*` before the response) is an error
//! at create time, with its column.

mod eval;
mod template;

use std::fmt;

use cel::common::ast::SourceInfo;
use cel::common::ast::{operators, Expr as Ast, IdedExpr, LiteralValue};

pub use eval::{EvalError, Facts, Val};
pub use template::Template;

use super::Phase;

/// A value's type, checked at create time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `true`/`false`.
    Bool,
    /// A 64-bit integer.
    Int,
    /// A UTF-8 string.
    String,
    /// A list of strings (header values, query values, list literals).
    List,
    /// A map from string to list of strings (headers, query parameters).
    Map,
    /// `null`.
    Null,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::String => "string",
            Type::List => "list(string)",
            Type::Map => "map(string, list(string))",
            Type::Null => "null",
        })
    }
}

/// A scalar variable a policy can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Var {
    /// `req.method`.
    Method,
    /// `req.host`: the Host without port, lowercased.
    Host,
    /// `req.url.scheme`: `http` or `https`, as the client connected.
    Scheme,
    /// `req.url.path`.
    Path,
    /// `req.url.query`: the raw query without `?`.
    Query,
    /// `req.version`: `1.0` or `1.1`.
    Version,
    /// `req.content_length`: -1 when unknown (chunked or none).
    ContentLength,
    /// `res.status_code`.
    StatusCode,
    /// `conn.client_ip`.
    ClientIp,
    /// `conn.client_port`.
    ClientPort,
    /// `conn.server_port`.
    ServerPort,
    /// `conn.tls.sni`: empty without TLS.
    TlsSni,
    /// `endpoint.id`.
    EndpointId,
    /// `endpoint.url`.
    EndpointUrl,
    /// `endpoint.host`.
    EndpointHost,
    /// `endpoint.protocol`.
    EndpointProtocol,
    /// `actions.forward_internal.error.code`: empty when the last forward succeeded.
    ForwardErrorCode,
    /// `actions.forward_internal.error.message`.
    ForwardErrorMessage,
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

/// Where a variable may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    Always,
    Http,
    Response,
}

const SCALARS: &[(&str, Var, Type, Availability)] = &[
    ("req.method", Var::Method, Type::String, Availability::Http),
    ("req.host", Var::Host, Type::String, Availability::Http),
    (
        "req.url.scheme",
        Var::Scheme,
        Type::String,
        Availability::Http,
    ),
    ("req.url.path", Var::Path, Type::String, Availability::Http),
    (
        "req.url.query",
        Var::Query,
        Type::String,
        Availability::Http,
    ),
    (
        "req.version",
        Var::Version,
        Type::String,
        Availability::Http,
    ),
    (
        "req.content_length",
        Var::ContentLength,
        Type::Int,
        Availability::Http,
    ),
    (
        "res.status_code",
        Var::StatusCode,
        Type::Int,
        Availability::Response,
    ),
    (
        "conn.client_ip",
        Var::ClientIp,
        Type::String,
        Availability::Always,
    ),
    (
        "conn.client_port",
        Var::ClientPort,
        Type::Int,
        Availability::Always,
    ),
    (
        "conn.server_port",
        Var::ServerPort,
        Type::Int,
        Availability::Always,
    ),
    (
        "conn.tls.sni",
        Var::TlsSni,
        Type::String,
        Availability::Always,
    ),
    (
        "endpoint.id",
        Var::EndpointId,
        Type::String,
        Availability::Always,
    ),
    (
        "endpoint.url",
        Var::EndpointUrl,
        Type::String,
        Availability::Always,
    ),
    (
        "endpoint.host",
        Var::EndpointHost,
        Type::String,
        Availability::Always,
    ),
    (
        "endpoint.protocol",
        Var::EndpointProtocol,
        Type::String,
        Availability::Always,
    ),
    (
        "actions.forward_internal.error.code",
        Var::ForwardErrorCode,
        Type::String,
        Availability::Always,
    ),
    (
        "actions.forward_internal.error.message",
        Var::ForwardErrorMessage,
        Type::String,
        Availability::Always,
    ),
];

const MAPS: &[(&str, MapVar, Availability)] = &[
    ("req.headers", MapVar::RequestHeaders, Availability::Http),
    (
        "req.url.query_params",
        MapVar::QueryParams,
        Availability::Http,
    ),
    (
        "res.headers",
        MapVar::ResponseHeaders,
        Availability::Response,
    ),
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

/// A compiled expression node.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Bool(bool),
    Int(i64),
    Str(Box<str>),
    Null,
    Var(Var),
    /// A whole map (only as the right side of `in`, or for `size`).
    Map(MapVar),
    /// `vars.NAME`.
    UserVar(Box<str>),
    /// `has(vars.NAME)`.
    HasUserVar(Box<str>),
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
        if expr.ty != Type::Bool {
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
        let compiler = Compiler { info: &info, phase };
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
                LiteralValue::Double(_) => {
                    return Err(self.error(e, "floating-point numbers are not supported"))
                }
                LiteralValue::Bytes(_) => {
                    return Err(self.error(e, "bytes literals are not supported"))
                }
            }),
            // The parser expands `has(a.b)` into a test-only select.
            Ast::Select(select) if select.test => {
                let base = dotted(&select.operand)
                    .ok_or_else(|| self.error(e, "has() takes a field, like has(vars.name)"))?;
                self.has(e, &format!("{base}.{}", select.field))
            }
            Ast::Ident(_) | Ast::Select(_) => self.variable(e),
            Ast::List(list) => {
                let mut items = Vec::with_capacity(list.elements.len());
                for item in &list.elements {
                    let (node, ty) = self.compile(item)?;
                    if ty != Type::String {
                        return Err(
                            self.error(item, format!("list literals hold strings, not {ty}"))
                        );
                    }
                    items.push(node);
                }
                Ok((Node::List(items), Type::List))
            }
            Ast::Call(call) => self.call(e, call),
            Ast::Map(_) | Ast::Struct(_) => {
                Err(self.error(e, "map and message literals are not supported"))
            }
            Ast::Comprehension(_) => Err(self.error(
                e,
                "macros over lists (all, exists, map, filter) are not supported",
            )),
            Ast::Unspecified => Err(self.error(e, "empty expression")),
        }
    }

    /// A dotted name: a scalar, a map, or `vars.NAME`.
    fn variable(&self, e: &IdedExpr) -> Result<(Node, Type), ExprError> {
        let path = dotted(e).ok_or_else(|| self.error(e, "expected a variable"))?;
        if let Some(name) = path.strip_prefix("vars.") {
            if name.is_empty() || name.contains('.') {
                return Err(self.error(e, "vars are read as vars.NAME"));
            }
            return Ok((Node::UserVar(name.into()), Type::String));
        }
        for (name, var, ty, availability) in SCALARS {
            if *name == path {
                self.check_available(e, name, *availability)?;
                return Ok((Node::Var(*var), *ty));
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
        if let Some(name) = path.strip_prefix("vars.") {
            return Ok((Node::HasUserVar(name.into()), Type::Bool));
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
            (operators::LOGICAL_NOT, None) => {
                arity(1)?;
                Ok((
                    Node::Not(b(self.typed(&args[0], Type::Bool, "!")?)),
                    Type::Bool,
                ))
            }
            (operators::NEGATE, None) => {
                arity(1)?;
                Ok((
                    Node::Negate(b(self.typed(&args[0], Type::Int, "-")?)),
                    Type::Int,
                ))
            }
            (operators::CONDITIONAL, None) => {
                arity(3)?;
                let c = self.typed(&args[0], Type::Bool, "?:")?;
                let (t, tt) = self.compile(&args[1])?;
                let (f, ft) = self.compile(&args[2])?;
                if tt != ft {
                    return Err(self.error(e, format!("?: branches differ: {tt} and {ft}")));
                }
                Ok((Node::Cond(b(c), b(t), b(f)), tt))
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
                let comparable = lt == rt && matches!(lt, Type::String | Type::Int | Type::Bool)
                    || (matches!(op, Cmp::Eq | Cmp::Ne) && (lt == Type::Null || rt == Type::Null));
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
                let needle = self.typed(&args[0], Type::String, "in")?;
                let (hay, ht) = self.compile(&args[1])?;
                match (ht, hay) {
                    (Type::List, hay) => Ok((Node::InList(b(needle), b(hay)), Type::Bool)),
                    (Type::Map, Node::Map(map)) => Ok((Node::InMap(b(needle), map), Type::Bool)),
                    (t, _) => {
                        Err(self.error(&args[1], format!("in expects a list or map, found {t}")))
                    }
                }
            }
            (operators::INDEX, None) => {
                arity(2)?;
                let (target, tt) = self.compile(&args[0])?;
                match (tt, target) {
                    (Type::Map, Node::Map(map)) => {
                        let key = self.typed(&args[1], Type::String, "a map index")?;
                        Ok((Node::MapValues(map, b(key)), Type::List))
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
                if !matches!(ty, Type::String | Type::List | Type::Map) {
                    return Err(self.error(
                        arg,
                        format!("size expects a string, list or map, found {ty}"),
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
            (other, _) => {
                Err(self.error(e, format!("unknown function `{}`", other.trim_matches('_'))))
            }
        }
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
