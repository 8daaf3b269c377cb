//! The data behind the geo and IP-intelligence policy variables (`conn.geo.*`,
//! `conn.client_ip.geo.*`, `.as.*`, `.categories`, `.is_tor_node`,
//! `.is_on_blocklist`, and the same under `conn.server_ip`): [`IpIntel`], loaded once
//! at startup from the files the operator gives, shared read-only by every worker,
//! and [`IpFacts`], what it knows about one address. No runtime, no I/O after load.
//!
//! # Sources
//!
//! - `--geoip-db FILE` (repeatable): MaxMind DB files in the GeoLite2/GeoIP2 City,
//!   Country or ASN layout, or DB-IP's "lite" City/ASN files, which share it. A City
//!   and an ASN database are separate files in practice, so a lookup reads every
//!   database and takes each field from the first one, in flag order, that has it.
//! - `--ip-categories DIR`: one list per category, `DIR/<category>.txt`, named by the
//!   documented category (`proxy.anonymous.tor.txt`, `blocklist.firehol_org.level_1.txt`,
//!   `com.google.googlebot.ipv4.txt`, ...). Each line holds one address or CIDR; a `#`
//!   or `;` starts a comment (Spamhaus's DROP lists use `;`), and blank lines are
//!   skipped. Files not ending in `.txt`, and hidden ones, are ignored.
//!
//! # Rules taken from the docs
//!
//! - Categories are hierarchical: an address in `com.cloudflare.ipv4` "also has the
//!   categories `com` and `com.cloudflare`". [`IpFacts::categories`] therefore lists
//!   every dotted prefix of every list the address is in, sorted, without repeats.
//! - `is_tor_node` is "equivalent to checking `'proxy.anonymous.tor' in
//!   conn.client_ip.categories`": true when the address is in `proxy.anonymous.tor.txt`
//!   (or a list below it, e.g. `proxy.anonymous.tor.exit.txt`).
//! - `is_on_blocklist` is "equivalent to checking `conn.client_ip.categories` for any
//!   blocklist category": true when `blocklist` is among the categories, i.e. the
//!   address is in some `blocklist.*.txt`. The hosted service's "curated, low
//!   false-positive" selection is not documented, so the operator curates by which
//!   lists they name `blocklist.*`.
//! - Without data, every variable is empty (`""`, `false`, `0`, `[]`), never an error:
//!   the docs' own checks are `metro_code != ''`.
//!
//! # Where each variable comes from (MaxMind DB keys)
//!
//! `location.*` (`conn.client_ip.geo.location.*`):
//!
//! | field          | key                                     |
//! |----------------|-----------------------------------------|
//! | `city`         | `city.names.en`                         |
//! | `continent`    | `continent.names.en`                    |
//! | `country`      | `country.names.en`                      |
//! | `country_code` | `country.iso_code`                      |
//! | `is_eu`        | `country.is_in_european_union`          |
//! | `latitude`     | `location.latitude`, as text            |
//! | `longitude`    | `location.longitude`, as text           |
//! | `metro_code`   | `location.metro_code`, as text          |
//! | `postal_code`  | `postal.code`                           |
//! | `radius`       | `location.accuracy_radius` (km), as text|
//! | `subdivision`  | `subdivisions[0].names.en` (the largest)|
//! | `timezone`     | `location.time_zone`                    |
//!
//! `registered_location.*`: `country`, `country_code` and `is_eu` come from
//! `registered_country.*` as above. The City layout has no registered city,
//! continent, metro code, subdivision or time zone, so those stay empty.
//!
//! `autonomous_system.number` / `.organization` (`.as.number` / `.as.organization`):
//! `autonomous_system_number` / `autonomous_system_organization` (ASN layout).
//!
//! `conn.geo.{city, country, country_code, latitude, longitude, radius, subdivision}`
//! are the client address's `location.*` fields of the same names: the docs list
//! that subset twice.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The category that makes `is_tor_node` true (the docs' definition).
const TOR_CATEGORY: &str = "proxy.anonymous.tor";
/// The category prefix that makes `is_on_blocklist` true.
const BLOCKLIST_NAMESPACE: &str = "blocklist";

/// What the loaded data says about one address: one field per documented variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpFacts {
    /// `.geo.location.*`: where the address is.
    pub location: GeoLocation,
    /// `.geo.registered_location.*`: where the address is registered.
    pub registered_location: RegisteredLocation,
    /// `.as.*`.
    pub autonomous_system: AutonomousSystem,
    /// `.categories`: every list the address is in, with every dotted prefix of its
    /// name; sorted.
    pub categories: Vec<String>,
    /// `.is_tor_node`: `proxy.anonymous.tor` is among the categories.
    pub is_tor_node: bool,
    /// `.is_on_blocklist`: `blocklist` is among the categories.
    pub is_on_blocklist: bool,
}

/// `.geo.location.*`. Latitude, longitude and radius are strings, as documented
/// (`double(conn.geo.latitude) >= 45.0`, `conn.geo.radius <= '5'`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoLocation {
    /// English name of the city.
    pub city: String,
    /// English name of the continent.
    pub continent: String,
    /// English name of the country.
    pub country: String,
    /// Two-letter ISO 3166-1 code of the country.
    pub country_code: String,
    /// Whether the country is in the European Union.
    pub is_eu: bool,
    /// Approximate latitude in degrees.
    pub latitude: String,
    /// Approximate longitude in degrees.
    pub longitude: String,
    /// US metro (DMA) code.
    pub metro_code: String,
    /// Postal code (in some countries only its first part).
    pub postal_code: String,
    /// Kilometres around latitude/longitude that the address is likely within.
    pub radius: String,
    /// English name of the largest subdivision (state, province).
    pub subdivision: String,
    /// IANA time zone, e.g. `America/New_York`.
    pub timezone: String,
}

/// `.geo.registered_location.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredLocation {
    /// English name of the city (no MaxMind layout carries it: empty).
    pub city: String,
    /// English name of the continent (no MaxMind layout carries it: empty).
    pub continent: String,
    /// English name of the country the network is registered in.
    pub country: String,
    /// Its two-letter ISO 3166-1 code.
    pub country_code: String,
    /// Whether that country is in the European Union.
    pub is_eu: bool,
    /// US metro code (no MaxMind layout carries it: empty).
    pub metro_code: String,
    /// Subdivision (no MaxMind layout carries it: empty).
    pub subdivision: String,
    /// Time zone (no MaxMind layout carries it: empty).
    pub timezone: String,
}

/// `.as.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutonomousSystem {
    /// The AS number; 0 when unknown (AS 0 is reserved, never announced).
    pub number: u32,
    /// The AS organization, e.g. `COMCAST-7922`.
    pub organization: String,
}

/// The geo databases and category lists, loaded once. Shared as `Arc<IpIntel>`:
/// lookups only read.
#[derive(Default)]
pub struct IpIntel {
    geo_dbs: Vec<GeoDb>,
    categories: CategoryTable,
}

/// One `--geoip-db` file.
struct GeoDb {
    /// For the log and `Debug`.
    path: PathBuf,
    reader: maxminddb::Reader<Vec<u8>>,
}

// === impl IpFacts ===

impl IpFacts {
    /// What is known without data: nothing.
    pub const EMPTY: IpFacts = IpFacts {
        location: GeoLocation::EMPTY,
        registered_location: RegisteredLocation::EMPTY,
        autonomous_system: AutonomousSystem::EMPTY,
        categories: Vec::new(),
        is_tor_node: false,
        is_on_blocklist: false,
    };
}

impl Default for IpFacts {
    fn default() -> Self {
        IpFacts::EMPTY
    }
}

impl GeoLocation {
    /// Every field empty.
    pub const EMPTY: GeoLocation = GeoLocation {
        city: String::new(),
        continent: String::new(),
        country: String::new(),
        country_code: String::new(),
        is_eu: false,
        latitude: String::new(),
        longitude: String::new(),
        metro_code: String::new(),
        postal_code: String::new(),
        radius: String::new(),
        subdivision: String::new(),
        timezone: String::new(),
    };
}

impl Default for GeoLocation {
    fn default() -> Self {
        GeoLocation::EMPTY
    }
}

impl RegisteredLocation {
    /// Every field empty.
    pub const EMPTY: RegisteredLocation = RegisteredLocation {
        city: String::new(),
        continent: String::new(),
        country: String::new(),
        country_code: String::new(),
        is_eu: false,
        metro_code: String::new(),
        subdivision: String::new(),
        timezone: String::new(),
    };
}

impl Default for RegisteredLocation {
    fn default() -> Self {
        RegisteredLocation::EMPTY
    }
}

impl AutonomousSystem {
    /// Unknown.
    pub const EMPTY: AutonomousSystem = AutonomousSystem {
        number: 0,
        organization: String::new(),
    };
}

impl Default for AutonomousSystem {
    fn default() -> Self {
        AutonomousSystem::EMPTY
    }
}

// === impl IpIntel ===

impl IpIntel {
    /// Opens every MaxMind DB in `dbs` and reads every list in `categories`. An error
    /// names the file (and the line, for a list).
    pub fn load(dbs: &[PathBuf], categories: Option<&Path>) -> Result<IpIntel, String> {
        let geo_dbs = dbs
            .iter()
            .map(|path| GeoDb::open(path))
            .collect::<Result<Vec<_>, _>>()?;
        let categories = match categories {
            Some(dir) => CategoryTable::load(dir)?,
            None => CategoryTable::default(),
        };
        Ok(IpIntel {
            geo_dbs,
            categories,
        })
    }

    /// Whether there is no data at all (every lookup gives [`IpFacts::EMPTY`]).
    pub fn is_empty(&self) -> bool {
        self.geo_dbs.is_empty() && self.categories.is_empty()
    }

    /// What the data says about `ip`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`,
    /// as a dual-stack socket reports IPv4 peers) count as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> IpFacts {
        let ip = ip.to_canonical();
        let mut facts = IpFacts::EMPTY;
        for db in &self.geo_dbs {
            // A record that does not decode (a damaged file; an IPv6 address in an
            // IPv4-only database) reads as no record: these variables are data, and
            // the request path has no use for an error about them.
            let record = db
                .reader
                .lookup(ip)
                .and_then(|found| found.decode::<DbRecord<'_>>());
            if let Ok(Some(record)) = record {
                record.fill(&mut facts);
            }
        }
        if let Some(set) = self.categories.lookup(ip) {
            facts.categories = set.names.to_vec();
            facts.is_tor_node = set.is_tor_node;
            facts.is_on_blocklist = set.is_on_blocklist;
        }
        facts
    }
}

impl fmt::Debug for IpIntel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpIntel")
            .field("geo_dbs", &self.geo_dbs)
            .field("categories", &self.categories)
            .finish()
    }
}

// === impl GeoDb ===

impl GeoDb {
    fn open(path: &Path) -> Result<GeoDb, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| format!("{}: not a MaxMind DB file: {e}", path.display()))?;
        log::info!(
            "geoip db {}: {} (IPv{})",
            path.display(),
            reader.metadata().database_type,
            reader.metadata().ip_version
        );
        Ok(GeoDb {
            path: path.to_owned(),
            reader,
        })
    }
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// The keys of the City, Country and ASN layouts that the variables read, decoded
/// in one pass (other keys and languages are skipped, not decoded), borrowed from
/// the database's bytes.
#[derive(Default, Deserialize)]
#[serde(default)]
struct DbRecord<'a> {
    #[serde(borrow)]
    city: Named<'a>,
    #[serde(borrow)]
    continent: Named<'a>,
    #[serde(borrow)]
    country: DbCountry<'a>,
    #[serde(borrow)]
    registered_country: DbCountry<'a>,
    #[serde(borrow)]
    location: DbLocation<'a>,
    #[serde(borrow)]
    postal: DbPostal<'a>,
    #[serde(borrow)]
    subdivisions: LargestSubdivision<'a>,
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// A map with `names`, e.g. `city`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    names: EnglishName<'a>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct EnglishName<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DbCountry<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    names: EnglishName<'a>,
    is_in_european_union: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DbLocation<'a> {
    latitude: Option<f64>,
    longitude: Option<f64>,
    accuracy_radius: Option<u16>,
    metro_code: Option<u16>,
    #[serde(borrow)]
    time_zone: Option<&'a str>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DbPostal<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// The English name of `subdivisions[0]` (they run largest first); the rest are
/// skipped, so a lookup allocates no list.
#[derive(Default)]
struct LargestSubdivision<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for LargestSubdivision<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct First<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for First<'a> {
            type Value = LargestSubdivision<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of subdivisions")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first: Option<Named<'a>> = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LargestSubdivision(first.and_then(|s| s.names.en)))
            }
        }

        deserializer.deserialize_seq(First(std::marker::PhantomData))
    }
}

impl DbRecord<'_> {
    /// Sets each field of `facts` that is still empty and that this record has.
    fn fill(&self, facts: &mut IpFacts) {
        let location = &mut facts.location;
        fill_text(&mut location.city, self.city.names.en);
        fill_text(&mut location.continent, self.continent.names.en);
        fill_text(&mut location.country, self.country.names.en);
        fill_text(&mut location.country_code, self.country.iso_code);
        location.is_eu |= self.country.is_in_european_union == Some(true);
        fill_number(&mut location.latitude, self.location.latitude);
        fill_number(&mut location.longitude, self.location.longitude);
        fill_number(&mut location.metro_code, self.location.metro_code);
        fill_text(&mut location.postal_code, self.postal.code);
        fill_number(&mut location.radius, self.location.accuracy_radius);
        fill_text(&mut location.subdivision, self.subdivisions.0);
        fill_text(&mut location.timezone, self.location.time_zone);
        let registered = &mut facts.registered_location;
        fill_text(&mut registered.country, self.registered_country.names.en);
        fill_text(
            &mut registered.country_code,
            self.registered_country.iso_code,
        );
        registered.is_eu |= self.registered_country.is_in_european_union == Some(true);
        let system = &mut facts.autonomous_system;
        if system.number == 0 {
            system.number = self.autonomous_system_number.unwrap_or(0);
        }
        fill_text(
            &mut system.organization,
            self.autonomous_system_organization,
        );
    }
}

fn fill_text(field: &mut String, value: Option<&str>) {
    if let Some(value) = value.filter(|_| field.is_empty()) {
        value.clone_into(field);
    }
}

fn fill_number(field: &mut String, value: Option<impl fmt::Display>) {
    if let Some(value) = value.filter(|_| field.is_empty()) {
        // f64's Display is the shortest text that reads back as the same number
        // (51.5142, not 51.514199999999995), as the docs' `double(...)` expects.
        *field = value.to_string();
    }
}

// === impl CategoryTable ===

/// Every category list, flattened into sorted, disjoint address spans, each with the
/// set of categories covering it: a lookup is one binary search, however many lists
/// and networks there are.
#[derive(Default)]
struct CategoryTable {
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
    /// The distinct category sets the spans point at.
    sets: Vec<CategorySet>,
    /// How many lists were read (for `Debug`).
    lists: usize,
}

/// Counts only: the spans of a large list would fill any log line they reached.
impl fmt::Debug for CategoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CategoryTable")
            .field("lists", &self.lists)
            .field("spans", &(self.v4.len() + self.v6.len()))
            .field("sets", &self.sets.len())
            .finish()
    }
}

/// Addresses `first..=last`, all in the categories of `sets[set]`.
#[derive(Clone, Copy)]
struct Span<A> {
    first: A,
    last: A,
    set: u32,
}

/// What a span's addresses are: the expanded category names and the two shortcuts,
/// computed once at load.
struct CategorySet {
    names: Box<[String]>,
    is_tor_node: bool,
    is_on_blocklist: bool,
}

impl CategoryTable {
    /// Reads every `DIR/<category>.txt`.
    fn load(dir: &Path) -> Result<CategoryTable, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".txt") || !path.is_file() {
                continue;
            }
            paths.push(path);
        }
        // Sorted, so category ids (and the log) do not depend on the directory order.
        paths.sort();
        let mut lists = CategoryLists::default();
        for path in &paths {
            lists.read(path)?;
        }
        let table = lists.build();
        log::info!(
            "ip categories {}: {} lists, {} address spans",
            dir.display(),
            table.lists,
            table.v4.len() + table.v6.len()
        );
        if table.lists == 0 {
            log::warn!("ip categories {}: no <category>.txt lists", dir.display());
        }
        Ok(table)
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn lookup(&self, ip: IpAddr) -> Option<&CategorySet> {
        let set = match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }?;
        self.sets.get(set as usize)
    }
}

/// The span holding `addr`, by binary search over the sorted, disjoint spans.
fn find<A: Address>(spans: &[Span<A>], addr: A) -> Option<u32> {
    let after = spans.partition_point(|span| span.first <= addr);
    let span = spans.get(after.checked_sub(1)?)?;
    (addr <= span.last).then_some(span.set)
}

/// The lists as read: each network as an inclusive range tagged with its list.
#[derive(Default)]
struct CategoryLists {
    /// List names, indexed by list id.
    names: Vec<String>,
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl CategoryLists {
    /// Reads the list in `path`, named by its file stem.
    fn read(&mut self, path: &Path) -> Result<(), String> {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| is_category_name(s))
            .ok_or_else(|| {
                format!(
                    "{}: not a category name (dot-separated parts of letters, digits, \
                     `-` and `_`, e.g. proxy.anonymous.tor.txt)",
                    path.display()
                )
            })?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let id =
            u32::try_from(self.names.len()).map_err(|_| "too many category lists".to_owned())?;
        for (index, line) in text.lines().enumerate() {
            let entry = line.split(['#', ';']).next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match parse_network(entry) {
                Some(Network::V4(first, last)) => self.v4.push((first, last, id)),
                Some(Network::V6(first, last)) => self.v6.push((first, last, id)),
                None => {
                    return Err(format!(
                        "{}:{}: `{entry}` is not an IP address or CIDR",
                        path.display(),
                        index + 1
                    ))
                }
            }
        }
        self.names.push(name.to_owned());
        Ok(())
    }

    fn build(self) -> CategoryTable {
        let mut sets = SetInterner::default();
        let v4 = flatten(self.v4, self.names.len(), &mut sets);
        let v6 = flatten(self.v6, self.names.len(), &mut sets);
        let sets = sets
            .members
            .iter()
            .map(|ids| CategorySet::of(ids.iter().map(|&id| self.names[id as usize].as_str())))
            .collect();
        CategoryTable {
            v4,
            v6,
            sets,
            lists: self.names.len(),
        }
    }
}

impl CategorySet {
    /// The set for an address in the lists `names`: each name with its dotted
    /// prefixes (`com.cloudflare.ipv4` gives `com`, `com.cloudflare` too).
    fn of<'n>(names: impl Iterator<Item = &'n str>) -> CategorySet {
        let mut expanded = BTreeSet::new();
        for name in names {
            for (at, _) in name.match_indices('.') {
                expanded.insert(&name[..at]);
            }
            expanded.insert(name);
        }
        CategorySet {
            is_tor_node: expanded.contains(TOR_CATEGORY),
            is_on_blocklist: expanded.contains(BLOCKLIST_NAMESPACE),
            names: expanded.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// Gives each distinct set of list ids one index.
#[derive(Default)]
struct SetInterner {
    index: HashMap<Vec<u32>, u32>,
    members: Vec<Vec<u32>>,
}

impl SetInterner {
    fn intern(&mut self, ids: &BTreeSet<u32>) -> u32 {
        let key: Vec<u32> = ids.iter().copied().collect();
        if let Some(&set) = self.index.get(&key) {
            return set;
        }
        // At most one set per span, and spans are at most twice the networks read,
        // which are far below u32::MAX lines.
        let set = self.members.len() as u32;
        self.members.push(key.clone());
        self.index.insert(key, set);
        set
    }
}

/// Sweeps the (possibly overlapping) ranges into disjoint spans: at each range's
/// first address its list joins the active set, after its last it leaves, and each
/// stretch between two such points with a non-empty set becomes one span.
fn flatten<A: Address>(
    ranges: Vec<(A, A, u32)>,
    lists: usize,
    sets: &mut SetInterner,
) -> Vec<Span<A>> {
    // (where, joins, list): at equal addresses leaving and joining both apply before
    // the next span starts, so their order does not matter.
    let mut events = Vec::with_capacity(ranges.len() * 2);
    for (first, last, list) in ranges {
        events.push((first, true, list));
        if let Some(after) = last.successor() {
            events.push((after, false, list));
        }
    }
    events.sort_unstable_by_key(|&(at, _, _)| at);
    // A list's ranges may overlap each other: count how many cover the point.
    let mut depth = vec![0u32; lists];
    let mut active = BTreeSet::new();
    let mut spans: Vec<Span<A>> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while let Some(&(_, joins, list)) = events.get(i).filter(|e| e.0 == at) {
            let d = &mut depth[list as usize];
            if joins {
                *d += 1;
                active.insert(list);
            } else {
                *d -= 1;
                if *d == 0 {
                    active.remove(&list);
                }
            }
            i += 1;
        }
        if active.is_empty() {
            continue;
        }
        let last = events.get(i).map_or(A::MAX, |next| next.0.predecessor());
        let set = sets.intern(&active);
        match spans.last_mut() {
            // Adjacent ranges of the same lists (10.0.0.0/24, 10.0.1.0/24) make one.
            Some(prev) if prev.set == set && prev.last.successor() == Some(at) => prev.last = last,
            _ => spans.push(Span {
                first: at,
                last,
                set,
            }),
        }
    }
    spans
}

/// An address as a number: `u32` for IPv4, `u128` for IPv6.
trait Address: Copy + Ord {
    const MAX: Self;
    fn successor(self) -> Option<Self>;
    /// The address before `self`; only called on addresses above the smallest.
    fn predecessor(self) -> Self;
}

impl Address for u32 {
    const MAX: Self = u32::MAX;

    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }

    fn predecessor(self) -> Self {
        self - 1
    }
}

impl Address for u128 {
    const MAX: Self = u128::MAX;

    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }

    fn predecessor(self) -> Self {
        self - 1
    }
}

/// A network as an inclusive range of addresses.
#[derive(Debug, PartialEq, Eq)]
enum Network {
    V4(u32, u32),
    V6(u128, u128),
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or one address. Host bits below the prefix
/// are ignored (`10.1.2.3/8` is `10.0.0.0/8`), as lists written by hand have them;
/// an IPv4-mapped IPv6 network is the IPv4 network, as lookups see such addresses.
fn parse_network(text: &str) -> Option<Network> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let prefix = match prefix {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u32>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    match addr {
        IpAddr::V4(v4) => {
            let prefix = prefix.unwrap_or(32);
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            (prefix <= 32).then(|| {
                let first = u32::from(v4) & !host;
                Network::V4(first, first | host)
            })
        }
        IpAddr::V6(v6) => {
            let prefix = prefix.unwrap_or(128);
            if prefix > 128 {
                return None;
            }
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return parse_network(&format!("{v4}/{}", prefix - 96));
            }
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            let first = u128::from(v6) & !host;
            Some(Network::V6(first, first | host))
        }
    }
}

/// Dot-separated, non-empty parts of ASCII letters, digits, `-` and `_`, as every
/// documented category is (`com.aws.us-east-1.sns`, `blocklist.firehol_org.level_1`).
fn is_category_name(name: &str) -> bool {
    name.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

thread_local! {
    /// The data this worker thread reads, installed when the worker starts: lookups
    /// on the request path touch no shared reference count.
    static HERE: std::cell::RefCell<Arc<IpIntel>> = std::cell::RefCell::default();
}

/// Makes `intel` the data of lookups on this thread ([`lookup_here`]).
pub(crate) fn install(intel: Arc<IpIntel>) {
    HERE.with(|here| *here.borrow_mut() = intel);
}

/// What this thread's data says about `ip` (empty before [`install`]).
pub(crate) fn lookup_here(ip: IpAddr) -> IpFacts {
    HERE.with(|here| here.borrow().lookup(ip))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use innergate_test_support::{AsnRecord, CityRecord, TestGeoDb};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A City db and an ASN db (separate files, as MaxMind ships them).
    fn geo_dbs(dir: &Path) -> Vec<PathBuf> {
        let city = dir.join("city.mmdb");
        TestGeoDb::new("GeoLite2-City")
            .city(
                "81.2.69.0/24",
                &CityRecord {
                    continent_code: "EU",
                    continent: "Europe",
                    country_code: "GB",
                    country: "United Kingdom",
                    registered_country_code: "FR",
                    registered_country: "France",
                    registered_is_eu: true,
                    subdivisions: &["England", "Westminster"],
                    city: "London",
                    postal_code: "SW1A",
                    latitude: Some(51.5142),
                    longitude: Some(-0.0931),
                    accuracy_radius: Some(5),
                    time_zone: "Europe/London",
                    ..CityRecord::default()
                },
            )
            .city(
                "2001:db8:100::/40",
                &CityRecord {
                    continent: "North America",
                    country_code: "US",
                    country: "United States",
                    subdivisions: &["Ohio"],
                    city: "Strongsville",
                    latitude: Some(45.0),
                    longitude: Some(-93.0),
                    metro_code: Some(510),
                    time_zone: "America/New_York",
                    ..CityRecord::default()
                },
            )
            .city(
                "89.160.20.0/24",
                &CityRecord {
                    country_code: "SE",
                    country: "Sweden",
                    is_eu: true,
                    ..CityRecord::default()
                },
            )
            .write(&city);
        let asn = dir.join("asn.mmdb");
        TestGeoDb::new("GeoLite2-ASN")
            .asn(
                "81.2.0.0/16",
                &AsnRecord {
                    number: 20712,
                    organization: "Andrews & Arnold Ltd",
                },
            )
            .asn(
                "2001:db8::/32",
                &AsnRecord {
                    number: 7922,
                    organization: "COMCAST-7922",
                },
            )
            .write(&asn);
        vec![city, asn]
    }

    fn categories_dir(dir: &Path) -> PathBuf {
        let cats = dir.join("categories");
        std::fs::create_dir(&cats).unwrap();
        write(
            &cats,
            "proxy.anonymous.tor.txt",
            "# Tor exit nodes\n185.220.101.1\n\n185.220.101.2 # inline\n2001:db8:100::7\n",
        );
        write(
            &cats,
            "blocklist.org.spamhaus.drop.ipv4.txt",
            "; Spamhaus DROP List\n185.220.100.0/22 ; SBL000001\n",
        );
        write(
            &cats,
            "com.cloudflare.ipv4.txt",
            "104.16.0.0/13\n104.24.0.0/14\n",
        );
        write(&cats, "com.cloudflare.ipv6.txt", "2606:4700::/32\n");
        write(&cats, "README.md", "not a list\n");
        cats
    }

    #[test]
    fn lookups_read_every_geo_db_and_the_categories() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = geo_dbs(dir.path());
        let cats = categories_dir(dir.path());
        let intel = Arc::new(IpIntel::load(&dbs, Some(&cats)).unwrap());
        assert!(!intel.is_empty());

        let london = intel.lookup(ip("81.2.69.160"));
        assert_eq!(
            london.location,
            GeoLocation {
                city: "London".into(),
                continent: "Europe".into(),
                country: "United Kingdom".into(),
                country_code: "GB".into(),
                is_eu: false,
                latitude: "51.5142".into(),
                longitude: "-0.0931".into(),
                metro_code: "".into(),
                postal_code: "SW1A".into(),
                radius: "5".into(),
                subdivision: "England".into(),
                timezone: "Europe/London".into(),
            }
        );
        assert_eq!(
            london.registered_location,
            RegisteredLocation {
                country: "France".into(),
                country_code: "FR".into(),
                is_eu: true,
                ..RegisteredLocation::EMPTY
            }
        );
        assert_eq!(
            london.autonomous_system,
            AutonomousSystem {
                number: 20712,
                organization: "Andrews & Arnold Ltd".into()
            }
        );
        assert!(london.categories.is_empty());

        // The ASN db covers more than the City db: each field from whoever has it.
        let elsewhere = intel.lookup(ip("81.2.1.1"));
        assert_eq!(elsewhere.location, GeoLocation::EMPTY);
        assert_eq!(elsewhere.autonomous_system.number, 20712);

        let ohio = intel.lookup(ip("2001:db8:100::7"));
        assert_eq!(ohio.location.city, "Strongsville");
        assert_eq!(ohio.location.continent, "North America");
        assert_eq!(ohio.location.subdivision, "Ohio");
        assert_eq!(ohio.location.latitude, "45");
        assert_eq!(ohio.location.longitude, "-93");
        assert_eq!(ohio.location.metro_code, "510");
        assert_eq!(ohio.location.timezone, "America/New_York");
        assert_eq!(ohio.autonomous_system.organization, "COMCAST-7922");
        assert_eq!(
            ohio.categories,
            ["proxy", "proxy.anonymous", "proxy.anonymous.tor"]
        );
        assert!(ohio.is_tor_node);
        assert!(!ohio.is_on_blocklist);

        assert!(intel.lookup(ip("89.160.20.1")).location.is_eu);

        // In the Tor list and inside the blocklist's /22.
        let exit = intel.lookup(ip("185.220.101.2"));
        assert_eq!(
            exit.categories,
            [
                "blocklist",
                "blocklist.org",
                "blocklist.org.spamhaus",
                "blocklist.org.spamhaus.drop",
                "blocklist.org.spamhaus.drop.ipv4",
                "proxy",
                "proxy.anonymous",
                "proxy.anonymous.tor",
            ]
        );
        assert!(exit.is_tor_node && exit.is_on_blocklist);
        let listed = intel.lookup(ip("185.220.103.255"));
        assert!(listed.is_on_blocklist && !listed.is_tor_node);
        assert!(intel.lookup(ip("185.220.104.0")).categories.is_empty());
        // Dual-stack sockets report IPv4 peers as IPv4-mapped IPv6.
        assert!(intel.lookup(ip("::ffff:185.220.101.1")).is_tor_node);

        let cloudflare = ["com", "com.cloudflare", "com.cloudflare.ipv4"];
        assert_eq!(intel.lookup(ip("104.16.0.0")).categories, cloudflare);
        assert_eq!(intel.lookup(ip("104.27.255.255")).categories, cloudflare);
        assert!(intel.lookup(ip("104.28.0.0")).categories.is_empty());
        assert_eq!(
            intel.lookup(ip("2606:4700::1111")).categories,
            ["com", "com.cloudflare", "com.cloudflare.ipv6"]
        );

        assert_eq!(intel.lookup(ip("10.0.0.1")), IpFacts::EMPTY);
        assert_eq!(intel.lookup(ip("::1")), IpFacts::EMPTY);
    }

    #[test]
    fn without_data_every_lookup_is_empty() {
        let intel = IpIntel::load(&[], None).unwrap();
        assert!(intel.is_empty());
        for addr in ["81.2.69.160", "2001:db8::1", "0.0.0.0", "::"] {
            assert_eq!(intel.lookup(ip(addr)), IpFacts::EMPTY);
        }
        assert_eq!(IpFacts::default(), IpFacts::EMPTY);
        assert_eq!(IpIntel::default().lookup(ip("1.1.1.1")), IpFacts::EMPTY);
    }

    #[test]
    fn an_empty_categories_dir_gives_no_categories() {
        let dir = tempfile::tempdir().unwrap();
        let intel = IpIntel::load(&[], Some(dir.path())).unwrap();
        assert!(intel.is_empty());
        assert!(intel.lookup(ip("185.220.101.1")).categories.is_empty());
    }

    #[test]
    fn a_bad_list_line_is_refused_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let list = write(
            dir.path(),
            "proxy.anonymous.tor.txt",
            "# exits\n185.220.101.1\n185.220.101.300\n",
        );
        let err = IpIntel::load(&[], Some(dir.path())).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}:3: `185.220.101.300` is not an IP address or CIDR",
                list.display()
            )
        );
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "::/129", "tor"] {
            std::fs::write(&list, format!("{bad}\n")).unwrap();
            let err = IpIntel::load(&[], Some(dir.path())).unwrap_err();
            assert!(err.ends_with(&format!(":1: `{bad}` is not an IP address or CIDR")));
        }
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mmdb");
        let err = IpIntel::load(std::slice::from_ref(&missing), None).unwrap_err();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");
        let junk = write(dir.path(), "junk.mmdb", "not a database");
        let err = IpIntel::load(std::slice::from_ref(&junk), None).unwrap_err();
        assert!(
            err.starts_with(&format!("{}: not a MaxMind DB file", junk.display())),
            "{err}"
        );
        let err = IpIntel::load(&[], Some(&dir.path().join("nowhere"))).unwrap_err();
        assert!(err.contains("nowhere"), "{err}");
        let cats = dir.path().join("cats");
        std::fs::create_dir(&cats).unwrap();
        write(&cats, "bad..name.txt", "10.0.0.1\n");
        let err = IpIntel::load(&[], Some(&cats)).unwrap_err();
        assert!(err.contains("bad..name.txt: not a category name"), "{err}");
    }

    #[test]
    fn networks_parse_into_ranges() {
        assert_eq!(
            parse_network("10.0.0.1"),
            Some(Network::V4(0x0a00_0001, 0x0a00_0001))
        );
        assert_eq!(
            parse_network("10.1.2.3/8"),
            Some(Network::V4(0x0a00_0000, 0x0aff_ffff))
        );
        assert_eq!(parse_network("0.0.0.0/0"), Some(Network::V4(0, u32::MAX)));
        assert_eq!(parse_network("::/0"), Some(Network::V6(0, u128::MAX)));
        assert_eq!(
            parse_network("::ffff:10.0.0.0/104"),
            Some(Network::V4(0x0a00_0000, 0x0aff_ffff))
        );
        let v6 = u128::from("2001:db8::".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            parse_network("2001:db8::/32"),
            Some(Network::V6(v6, v6 | (u128::MAX >> 32)))
        );
    }

    #[test]
    fn overlapping_lists_split_into_disjoint_spans() {
        let dir = tempfile::tempdir().unwrap();
        // a: 10.0.0.0/8 twice over (overlapping itself), b: a hole inside it,
        // c: the top of the address space.
        write(dir.path(), "a.txt", "10.0.0.0/8\n10.1.0.0/16\n");
        write(dir.path(), "b.txt", "10.1.2.0/24\n");
        write(dir.path(), "c.txt", "255.255.255.255\n");
        let intel = IpIntel::load(&[], Some(dir.path())).unwrap();
        let cats = |s: &str| intel.lookup(ip(s)).categories;
        assert_eq!(cats("10.0.0.0"), ["a"]);
        assert_eq!(cats("10.1.1.255"), ["a"]);
        assert_eq!(cats("10.1.2.0"), ["a", "b"]);
        assert_eq!(cats("10.1.2.255"), ["a", "b"]);
        assert_eq!(cats("10.1.3.0"), ["a"]);
        assert_eq!(cats("10.255.255.255"), ["a"]);
        assert!(cats("11.0.0.0").is_empty());
        assert!(cats("9.255.255.255").is_empty());
        assert_eq!(cats("255.255.255.255"), ["c"]);
        // 10/8 with a hole is three spans, but the two outer ones share one set.
        assert_eq!(intel.categories.v4.len(), 4);
        assert_eq!(intel.categories.sets.len(), 3);
    }
}
