//! The replacement `redirect` and `url-rewrite` share, as the hosted service documents
//! it: `${…}` in `from` and `to` is interpolated first; then every match of the `from`
//! regex in the whole request URL (`scheme://authority/path?query`) is replaced by
//! `to`, whose `$1` and `${name}` name `from`'s groups. Without `from`, `to` is the
//! new URL. A URL that comes out unchanged means nothing happens.

use std::borrow::Cow;

use crate::policy::expr::{Facts, Template};
use crate::policy::Phase;

/// `from` and `to`, compiled.
#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    from: Option<From>,
    to: Template,
}

/// A `from` regex: compiled once when it is literal, per request when it interpolates.
#[derive(Clone, Debug)]
enum From {
    Fixed(regex::Regex),
    Interpolated(Template),
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Self) -> bool {
        let source = |from: &Option<From>| match from {
            None => None,
            Some(From::Fixed(re)) => Some(re.as_str().to_string()),
            Some(From::Interpolated(t)) => Some(t.source().to_string()),
        };
        source(&self.from) == source(&other.from) && self.to == other.to
    }
}

impl Eq for Rewrite {}

/// What a rewrite did to one URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `from` did not match, or the URL came out the same.
    Unchanged,
    /// The new URL, and what `from` matched: the whole match, then its groups.
    Rewritten { url: String, matches: Vec<String> },
    /// An interpolated `from` that is not a regex.
    Failed(String),
}

impl Rewrite {
    /// Compiles `to` and `from` (a literal `from` must be a valid regex).
    pub(crate) fn new(from: Option<&str>, to: &str, phase: Phase) -> Result<Self, String> {
        let from = match from {
            None => None,
            Some(text) => {
                let template = Template::compile(text, phase).map_err(|e| format!("from: {e}"))?;
                Some(match template.as_literal() {
                    Some(literal) => From::Fixed(
                        regex::Regex::new(literal)
                            .map_err(|e| format!("from: invalid regex: {e}"))?,
                    ),
                    None => From::Interpolated(template),
                })
            }
        };
        let to = Template::compile(to, phase).map_err(|e| format!("to: {e}"))?;
        Ok(Rewrite { from, to })
    }

    /// Whether every URL is replaced (no `from`).
    pub(crate) fn replaces_all(&self) -> bool {
        self.from.is_none()
    }

    /// Rewrites `url`.
    pub(crate) fn apply(&self, facts: &dyn Facts, url: &str) -> Outcome {
        let to = self.to.render(facts);
        let re: Cow<'_, regex::Regex> = match &self.from {
            None => {
                return if to == url {
                    Outcome::Unchanged
                } else {
                    Outcome::Rewritten {
                        url: to.into_owned(),
                        matches: vec![url.to_string()],
                    }
                };
            }
            Some(From::Fixed(re)) => Cow::Borrowed(re),
            Some(From::Interpolated(template)) => {
                match regex::Regex::new(&template.render(facts)) {
                    Ok(re) => Cow::Owned(re),
                    Err(e) => return Outcome::Failed(format!("from: invalid regex: {e}")),
                }
            }
        };
        let Some(captures) = re.captures(url) else {
            return Outcome::Unchanged;
        };
        let matches = captures
            .iter()
            .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
            .collect();
        let rewritten = re.replace_all(url, to.as_ref());
        if rewritten == url {
            return Outcome::Unchanged;
        }
        Outcome::Rewritten {
            url: rewritten.into_owned(),
            matches,
        }
    }
}

/// The error code results show for a `from` that failed to compile.
pub(crate) const BAD_PATTERN: &str = "ERR_IG_3304";

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFacts;

    impl Facts for NoFacts {
        fn string(&self, _: crate::policy::expr::Var) -> &str {
            "example.com"
        }
        fn int(&self, _: crate::policy::expr::Var) -> i64 {
            0
        }
        fn count(&self, _: crate::policy::expr::MapVar, _: &str) -> usize {
            0
        }
        fn value(&self, _: crate::policy::expr::MapVar, _: &str, _: usize) -> Option<&str> {
            None
        }
        fn map_size(&self, _: crate::policy::expr::MapVar) -> usize {
            0
        }
        fn user_var(&self, _: &str) -> Option<&serde_json::Value> {
            None
        }
    }

    fn rewrite(from: Option<&str>, to: &str, url: &str) -> Outcome {
        Rewrite::new(from, to, Phase::HttpRequest)
            .unwrap()
            .apply(&NoFacts, url)
    }

    fn url(outcome: Outcome) -> String {
        match outcome {
            Outcome::Rewritten { url, .. } => url,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_documented_replacements() {
        // Only the matched part changes (the redirect page's own examples; it shows the
        // second with a `/` after the host that a replacement cannot make).
        assert_eq!(
            url(rewrite(
                Some("/v1/"),
                "/v2/",
                "https://example.com/api/v1/users"
            )),
            "https://example.com/api/v2/users"
        );
        assert_eq!(
            url(rewrite(
                Some("/old"),
                "https://new.example.com/blog",
                "https://example.com/old/foo"
            )),
            "https://example.comhttps://new.example.com/blog/foo"
        );
        assert_eq!(
            url(rewrite(
                Some("^((?:https?)://[^/]+)/api/v1/(.*)$"),
                "$1/api/v2/$2",
                "https://example.com/api/v1/users?id=1"
            )),
            "https://example.com/api/v2/users?id=1"
        );
        // Without from, to is the new URL.
        assert_eq!(
            url(rewrite(None, "https://new.example.com/blog", "http://a/b")),
            "https://new.example.com/blog"
        );
        // Every occurrence is replaced.
        assert_eq!(url(rewrite(Some("a"), "b", "http://h/aXa")), "http://h/bXb");
        // Nothing matched, or nothing changed: no rewrite.
        assert_eq!(
            rewrite(Some("/nope"), "/x", "http://h/a"),
            Outcome::Unchanged
        );
        assert_eq!(rewrite(Some("/a"), "/a", "http://h/a"), Outcome::Unchanged);
        assert_eq!(
            rewrite(None, "http://h/a", "http://h/a"),
            Outcome::Unchanged
        );
    }

    #[test]
    fn matches_are_the_match_then_its_groups() {
        let Outcome::Rewritten { matches, .. } = rewrite(
            Some("/api/v1/users\\?id=([0-9]+)(x)?"),
            "/api/v2/users/$1/",
            "https://h/api/v1/users?id=42",
        ) else {
            panic!()
        };
        assert_eq!(matches, ["/api/v1/users?id=42", "42", ""]);
    }

    #[test]
    fn an_interpolated_from_is_compiled_per_request() {
        assert_eq!(
            url(rewrite(
                Some("^https://${req.host}/products"),
                "https://${req.host}/store",
                "https://example.com/products/1"
            )),
            "https://example.com/store/1"
        );
        // A literal from that is no regex is refused when the policy is created; an
        // interpolated one that renders to none fails that request only.
        assert!(Rewrite::new(Some("(("), "/", Phase::HttpRequest).is_err());
        assert!(matches!(
            rewrite(Some("${req.host}(("), "/", "https://example.com/"),
            Outcome::Failed(_)
        ));
    }
}
