//! `req.user_agent.*`: what a User-Agent header says, in the fields the hosted
//! service documents (name, version, os, os_version, device, the four device kinds
//! and the bot's url). The header is read the way browsers and crawlers write it:
//! `Product/version` tokens and `(comment; parts)`, with the well-known browsers told
//! apart by the tokens they add to Chrome's and Safari's (Edge's `Edg/`, Opera's
//! `OPR/`, Samsung's `SamsungBrowser/`, …). Parsed when a policy reads a field.

/// A field of the parsed User-Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UaField {
    /// `name`: the browser or client, such as `Safari` or `curl`.
    Name,
    /// `version`.
    Version,
    /// `os`: `Windows`, `macOS`, `iOS`, `Android`, `Linux`, `ChromeOS`, …
    Os,
    /// `os_version`.
    OsVersion,
    /// `device`: `iPhone`, `iPad` or an Android model.
    Device,
    /// `url`: the address a crawler gives for itself.
    Url,
    /// `is_mobile`.
    IsMobile,
    /// `is_tablet`.
    IsTablet,
    /// `is_desktop`.
    IsDesktop,
    /// `is_bot`.
    IsBot,
}

impl UaField {
    /// The field `rest` (after `req.user_agent.`) names.
    pub(super) fn named(rest: &str) -> Option<UaField> {
        Some(match rest {
            "name" => UaField::Name,
            "version" => UaField::Version,
            "os" => UaField::Os,
            "os_version" => UaField::OsVersion,
            "device" => UaField::Device,
            "url" => UaField::Url,
            "is_mobile" => UaField::IsMobile,
            "is_tablet" => UaField::IsTablet,
            "is_desktop" => UaField::IsDesktop,
            "is_bot" => UaField::IsBot,
            _ => return None,
        })
    }

    /// Whether it is one of the bools.
    pub(super) fn is_bool(self) -> bool {
        matches!(
            self,
            UaField::IsMobile | UaField::IsTablet | UaField::IsDesktop | UaField::IsBot
        )
    }
}

/// A User-Agent, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct UserAgent {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) os: String,
    pub(super) os_version: String,
    pub(super) device: String,
    pub(super) url: String,
    pub(super) mobile: bool,
    pub(super) tablet: bool,
    pub(super) desktop: bool,
    pub(super) bot: bool,
}

/// `Product/version` tokens, in order, and the parts of every `( … )` comment.
struct Tokens<'a> {
    products: Vec<(&'a str, &'a str)>,
    comments: Vec<&'a str>,
}

fn tokens(header: &str) -> Tokens<'_> {
    let mut products = Vec::new();
    let mut comments = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('(') {
            let end = inner.find(')').unwrap_or(inner.len());
            comments.extend(
                inner[..end]
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty()),
            );
            rest = inner.get(end + 1..).unwrap_or("").trim_start();
            continue;
        }
        let end = rest.find([' ', '(']).unwrap_or(rest.len());
        let token = &rest[..end];
        let (name, version) = token.split_once('/').unwrap_or((token, ""));
        if !name.is_empty() {
            products.push((name, version));
        }
        rest = rest[end..].trim_start();
    }
    Tokens { products, comments }
}

impl Tokens<'_> {
    fn version_of(&self, product: &str) -> Option<&str> {
        self.products
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(product))
            .map(|(_, v)| *v)
    }

    fn has(&self, product: &str) -> bool {
        self.version_of(product).is_some()
    }

    fn comment_starting(&self, prefix: &str) -> Option<&str> {
        self.comments
            .iter()
            .copied()
            .find(|c| c.starts_with(prefix))
    }
}

/// Browsers that put their own token beside Chrome's or Safari's, checked before
/// them: (token, name).
const BROWSERS: &[(&str, &str)] = &[
    ("Edg", "Edge"),
    ("Edge", "Edge"),
    ("EdgA", "Edge"),
    ("EdgiOS", "Edge"),
    ("OPR", "Opera"),
    ("OPiOS", "Opera"),
    ("Opera", "Opera"),
    ("SamsungBrowser", "Samsung Browser"),
    ("YaBrowser", "YandexBrowser"),
    ("Vivaldi", "Vivaldi"),
    ("UCBrowser", "UC Browser"),
    ("FxiOS", "Firefox"),
    ("Firefox", "Firefox"),
    ("CriOS", "Chrome"),
    ("HeadlessChrome", "HeadlessChrome"),
    ("Chrome", "Chrome"),
];

/// Parses `header`; every field is empty or false for an empty one.
pub(super) fn parse(header: &str) -> UserAgent {
    let t = tokens(header);
    let mut ua = UserAgent::default();
    operating_system(&t, &mut ua);
    if let Some((token, name)) = BROWSERS.iter().find(|(token, _)| t.has(token)) {
        ua.name = (*name).to_string();
        ua.version = t.version_of(token).unwrap_or("").to_string();
    } else if let Some(msie) = t.comment_starting("MSIE ") {
        ua.name = "Internet Explorer".into();
        ua.version = msie["MSIE ".len()..].to_string();
    } else if t.has("Trident") || t.comment_starting("Trident/").is_some() {
        ua.name = "Internet Explorer".into();
        ua.version = t
            .comment_starting("rv:")
            .map_or("", |rv| &rv[3..])
            .to_string();
    } else if t.has("Safari") || (t.has("AppleWebKit") && t.has("Mobile")) {
        ua.name = "Safari".into();
        ua.version = t.version_of("Version").unwrap_or("").to_string();
    }
    // Crawlers name themselves in a product or in the comment, with a URL.
    let crawler = |word: &str| {
        let w = word.to_ascii_lowercase();
        w.contains("bot") || w.contains("crawler") || w.contains("spider")
    };
    ua.url = t
        .comments
        .iter()
        .chain(t.products.iter().map(|(n, _)| n))
        .find_map(|c| {
            let c = c.trim_start_matches('+');
            c.starts_with("http").then(|| c.to_string())
        })
        .unwrap_or_default();
    let bot_product = t.products.iter().find(|(n, _)| crawler(n));
    let bot_comment = t
        .comments
        .iter()
        .find(|c| crawler(c) && !c.starts_with("http") && !c.starts_with('+'));
    if let Some((name, version)) = bot_product {
        ua.bot = true;
        ua.name = (*name).to_string();
        ua.version = (*version).to_string();
    } else if let Some(comment) = bot_comment {
        ua.bot = true;
        let (name, version) = comment.split_once('/').unwrap_or((comment, ""));
        ua.name = name.to_string();
        ua.version = version.to_string();
    }
    // Anything else (curl/8.5.0, Go-http-client/1.1) is named by its first product.
    if ua.name.is_empty() {
        if let Some((name, version)) = t.products.iter().find(|(n, _)| *n != "Mozilla") {
            ua.name = (*name).to_string();
            ua.version = (*version).to_string();
        }
    }
    let mobile_token = t.has("Mobile") || t.comments.contains(&"Mobile");
    ua.tablet = !ua.bot
        && (ua.device == "iPad"
            || t.comments.contains(&"Tablet")
            || (ua.os == "Android" && !mobile_token));
    ua.mobile = !ua.bot
        && !ua.tablet
        && (mobile_token || ua.os == "Windows Phone" || ua.device == "iPhone");
    ua.desktop = !ua.bot
        && !ua.mobile
        && !ua.tablet
        && matches!(
            ua.os.as_str(),
            "Windows" | "macOS" | "Linux" | "ChromeOS" | "FreeBSD"
        );
    ua
}

fn operating_system(t: &Tokens<'_>, ua: &mut UserAgent) {
    let (os, version, device): (&str, String, &str) =
        if let Some(c) = t.comment_starting("Windows Phone") {
            ("Windows Phone", after(c, "Windows Phone").to_string(), "")
        } else if let Some(c) = t.comment_starting("Windows NT ") {
            let nt = after(c, "Windows NT ");
            let version = match nt {
                "10.0" => "10",
                "6.3" => "8.1",
                "6.2" => "8",
                "6.1" => "7",
                "6.0" => "Vista",
                "5.1" | "5.2" => "XP",
                other => other,
            };
            ("Windows", version.to_string(), "")
        } else if let Some(device) = ["iPhone", "iPad", "iPod"]
            .into_iter()
            .find(|d| t.comments.iter().any(|c| c.starts_with(d)))
        {
            let version = t
                .comments
                .iter()
                .find_map(|c| {
                    let at = c.find(" OS ")?;
                    let v = c[at + 4..].split(' ').next()?;
                    Some(v.replace('_', "."))
                })
                .unwrap_or_default();
            ("iOS", version, device)
        } else if let Some(c) = t.comment_starting("Android") {
            // The model is the part after Android's, before its build id.
            let i = t.comments.iter().position(|x| *x == c).unwrap_or(0);
            let model = t
                .comments
                .iter()
                .skip(i + 1)
                .find(|m| !m.starts_with("wv") && !m.contains("rv:") && **m != "Mobile")
                .map_or("", |m| m.split(" Build/").next().unwrap_or(""));
            ("Android", after(c, "Android").to_string(), model)
        } else if let Some(c) = t
            .comments
            .iter()
            .find_map(|c| c.find("Mac OS X").map(|at| &c[at..]))
        {
            ("macOS", after(c, "Mac OS X").replace('_', "."), "")
        } else if t.comment_starting("CrOS").is_some() {
            ("ChromeOS", String::new(), "")
        } else if t.comments.iter().any(|c| c.contains("FreeBSD")) {
            ("FreeBSD", String::new(), "")
        } else if t.comments.iter().any(|c| c.contains("Linux")) {
            ("Linux", String::new(), "")
        } else {
            ("", String::new(), "")
        };
    ua.os = os.to_string();
    ua.os_version = version;
    ua.device = device.to_string();
}

/// What follows `prefix` in `c`, trimmed.
fn after<'a>(c: &'a str, prefix: &str) -> &'a str {
    c.get(prefix.len()..).unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn says(header: &str, name: &str, version: &str, os: &str, os_version: &str) -> UserAgent {
        let ua = parse(header);
        assert_eq!(
            (
                ua.name.as_str(),
                ua.version.as_str(),
                ua.os.as_str(),
                ua.os_version.as_str()
            ),
            (name, version, os, os_version),
            "{header}"
        );
        ua
    }

    #[test]
    fn browsers_systems_and_devices() {
        // The docs' example: Safari 10.1.2 on macOS 10.12.6.
        let ua = says(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_6) AppleWebKit/603.3.8 \
             (KHTML, like Gecko) Version/10.1.2 Safari/603.3.8",
            "Safari",
            "10.1.2",
            "macOS",
            "10.12.6",
        );
        assert!(ua.desktop && !ua.mobile && !ua.tablet && !ua.bot);
        let ua = says(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
             Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge",
            "120.0.2210.91",
            "Windows",
            "10",
        );
        assert!(ua.desktop);
        let ua = says(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
            "Safari",
            "17.1.2",
            "iOS",
            "17.1.2",
        );
        assert!(ua.mobile && !ua.desktop);
        assert_eq!(ua.device, "iPhone");
        let ua = says(
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, \
             like Gecko) CriOS/119.0.6045.169 Mobile/15E148 Safari/604.1",
            "Chrome",
            "119.0.6045.169",
            "iOS",
            "16.6",
        );
        assert!(ua.tablet && !ua.mobile);
        let ua = says(
            "Mozilla/5.0 (Linux; Android 13; SM-S901B) AppleWebKit/537.36 (KHTML, like \
             Gecko) Chrome/112.0.0.0 Mobile Safari/537.36",
            "Chrome",
            "112.0.0.0",
            "Android",
            "13",
        );
        assert!(ua.mobile);
        assert!(ua.device.contains("SM-S901B"), "{ua:?}");
        let ua = says(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox",
            "121.0",
            "Linux",
            "",
        );
        assert!(ua.desktop);
        says(
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
            "Internet Explorer",
            "11.0",
            "Windows",
            "7",
        );
    }

    #[test]
    fn tools_and_crawlers() {
        let ua = says("curl/8.5.0", "curl", "8.5.0", "", "");
        assert!(!ua.bot && !ua.desktop && !ua.mobile);
        let ua = says(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            "2.1",
            "",
            "",
        );
        assert!(ua.bot && !ua.desktop);
        assert_eq!(ua.url, "http://www.google.com/bot.html");
        let ua = parse("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)");
        assert_eq!(ua.name, "facebookexternalhit");
        assert_eq!(ua.url, "http://www.facebook.com/externalhit_uatext.php");
        assert_eq!(parse(""), UserAgent::default());
        // Whatever comes, nothing panics.
        for odd in ["(", ")", "((;;))", "a/ (b", "Mozilla/5.0 (Android", "/"] {
            parse(odd);
        }
    }
}
