//! `url-rewrite`: rewrite the path and query the upstream receives. `from` is a regex
//! matched against `/path?query`; `to` interpolates `${…}` and the captures `$1`. A
//! `from` that does not match leaves the request as it is.

use serde::Deserialize;

use super::{Exchange, Url};
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::expr::Template;
use crate::policy::Phase;

/// Config of `url-rewrite` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRewriteConfig {
    /// What to match in `/path?query`.
    pub from: String,
    /// What to replace it with.
    #[serde(deserialize_with = "super::scalar_string")]
    pub to: String,
}

/// `url-rewrite`, compiled.
#[derive(Clone, Debug)]
pub struct UrlRewrite {
    from: regex::Regex,
    to: Template,
}

impl PartialEq for UrlRewrite {
    fn eq(&self, other: &Self) -> bool {
        self.from.as_str() == other.from.as_str() && self.to == other.to
    }
}

impl Eq for UrlRewrite {}

impl UrlRewrite {
    /// Compiles the regex and the template.
    pub fn new(config: UrlRewriteConfig, phase: Phase) -> Result<Self, String> {
        let from =
            regex::Regex::new(&config.from).map_err(|e| format!("from: invalid regex: {e}"))?;
        let to = Template::compile(&config.to, phase).map_err(|e| format!("to: {e}"))?;
        Ok(UrlRewrite { from, to })
    }

    /// Rewrites the request target when `from` matches.
    pub fn apply(&self, x: &mut dyn Exchange) {
        let target = Url::of(x.facts()).target();
        let Some(captures) = self.from.captures(&target) else {
            return;
        };
        let rendered = self.to.render(x.facts());
        let mut replacement = String::new();
        captures.expand(&rendered, &mut replacement);
        let whole = captures.get(0).expect("group 0 is the whole match");
        let mut rewritten = String::with_capacity(target.len() + replacement.len());
        rewritten.push_str(&target[..whole.start()]);
        rewritten.push_str(&replacement);
        rewritten.push_str(&target[whole.end()..]);
        // The target goes on the request line: keep it a valid origin-form.
        let rewritten: String = rewritten.chars().filter(|c| c.is_ascii_graphic()).collect();
        if rewritten.starts_with('/') {
            x.set_target(&rewritten);
        }
    }
}

impl PolicyAction for UrlRewrite {
    type Config = UrlRewriteConfig;

    fn compile(config: UrlRewriteConfig, phase: Phase) -> Result<Self, String> {
        UrlRewrite::new(config, phase)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        self.apply(x);
        Verdict::Continue
    }
}
