//! `${expr}` interpolation in config strings (the fields SPEC §4 marks interp).

use std::borrow::Cow;

use super::{ExprError, Expression, Facts};
use crate::policy::Phase;

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(Expression),
}

/// A config string with `${…}` expressions, compiled once.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

impl Template {
    /// Compiles `text`; `$${` writes a literal `${`.
    pub fn compile(text: &str, phase: Phase) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            if rest[..start].ends_with('$') {
                literal.push_str(&rest[..start - 1]);
                literal.push_str("${");
                offset += start + 2;
                rest = &rest[start + 2..];
                continue;
            }
            literal.push_str(&rest[..start]);
            let body = &rest[start + 2..];
            let end = body.find('}').ok_or(ExprError {
                column: offset + start + 1,
                message: "unclosed ${".into(),
            })?;
            let expr = Expression::compile_any(&body[..end], phase).map_err(|e| ExprError {
                column: offset + start + 2 + e.column,
                message: e.message,
            })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Expr(expr));
            offset += start + 2 + end + 1;
            rest = &body[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression when the text is exactly one `${…}` and nothing else (whose
    /// value keeps its type where a value may be typed: set-vars).
    pub fn single_expression(&self) -> Option<&Expression> {
        match self.parts.as_slice() {
            [Part::Expr(e)] => Some(e),
            _ => None,
        }
    }

    /// The literal text when there is nothing to interpolate.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Renders against `facts`; borrowed when the template is a plain literal. An
    /// expression that fails to evaluate renders as empty.
    pub fn render<'t>(&'t self, facts: &dyn Facts) -> Cow<'t, str> {
        if let Some(text) = self.as_literal() {
            return Cow::Borrowed(text);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    if let Ok(v) = e.eval(facts) {
                        v.write_to(facts, &mut out);
                    }
                }
            }
        }
        Cow::Owned(out)
    }
}
