//! Small MaxMind DB (`.mmdb`) files written at test time, in the record layouts of
//! the GeoLite2/GeoIP2 City and ASN databases (which DB-IP's "lite" files share), so
//! tests of the geo and IP-intelligence policy variables need no downloaded data.
//!
//! The file format (search tree, data section, metadata) is `mmdb-writer`'s work;
//! this module owns the layouts: which keys a City or an ASN record has, and their
//! MaxMind DB types (`accuracy_radius` and `metro_code` are uint16, the AS number
//! uint32, coordinates doubles), as MaxMind's own files have them.

use std::collections::BTreeMap;
use std::path::Path;

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{MergeStrategy, Value, Writer};

/// What a GeoLite2-City record says about a network. An empty string or `None`
/// leaves its key out, as MaxMind does for what it does not know.
#[derive(Clone, Debug, Default)]
pub struct CityRecord<'a> {
    /// `continent.code`, e.g. `NA`.
    pub continent_code: &'a str,
    /// `continent.names.en`, e.g. `North America`.
    pub continent: &'a str,
    /// `country.iso_code`, e.g. `US`.
    pub country_code: &'a str,
    /// `country.names.en`, e.g. `United States`.
    pub country: &'a str,
    /// `country.is_in_european_union` (written only when true, as MaxMind does).
    pub is_eu: bool,
    /// `registered_country.iso_code`: where the network is registered.
    pub registered_country_code: &'a str,
    /// `registered_country.names.en`.
    pub registered_country: &'a str,
    /// `registered_country.is_in_european_union` (written only when true).
    pub registered_is_eu: bool,
    /// `subdivisions[i].names.en`, largest first (e.g. `["England", "Westminster"]`).
    pub subdivisions: &'a [&'a str],
    /// `city.names.en`.
    pub city: &'a str,
    /// `postal.code`.
    pub postal_code: &'a str,
    /// `location.latitude`.
    pub latitude: Option<f64>,
    /// `location.longitude`.
    pub longitude: Option<f64>,
    /// `location.accuracy_radius`, in kilometres.
    pub accuracy_radius: Option<u16>,
    /// `location.metro_code` (US only; MaxMind has deprecated it).
    pub metro_code: Option<u16>,
    /// `location.time_zone`, e.g. `America/New_York`.
    pub time_zone: &'a str,
}

/// What a GeoLite2-ASN record says about a network.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsnRecord<'a> {
    /// `autonomous_system_number`.
    pub number: u32,
    /// `autonomous_system_organization` (left out when empty).
    pub organization: &'a str,
}

/// A MaxMind DB being filled for one test. The tree is IPv6, as in MaxMind's files,
/// with IPv4 networks reachable both as IPv4 and as IPv4-mapped IPv6 addresses.
#[derive(Debug)]
pub struct TestGeoDb {
    writer: Writer,
}

impl TestGeoDb {
    /// An empty database whose metadata names it `database_type` (e.g.
    /// `GeoLite2-City`, `GeoLite2-ASN`).
    pub fn new(database_type: &str) -> TestGeoDb {
        TestGeoDb {
            writer: Writer::new(database_type),
        }
    }

    /// Gives `network` (a CIDR, e.g. `81.2.69.0/24` or `2001:db8::/32`) a City
    /// record. Its keys join those already there (an ASN record, say), so one
    /// network can carry both layouts.
    pub fn city(&mut self, network: &str, record: &CityRecord<'_>) -> &mut TestGeoDb {
        self.insert(network, city_value(record))
    }

    /// Gives `network` an ASN record, next to any keys already there.
    pub fn asn(&mut self, network: &str, record: &AsnRecord<'_>) -> &mut TestGeoDb {
        let mut map = Fields::default();
        map.put("autonomous_system_number", Value::from(record.number));
        map.text("autonomous_system_organization", record.organization);
        self.insert(network, map.into_value())
    }

    /// The database file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.writer.to_bytes().expect("a test database serializes")
    }

    /// Writes the database file to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    fn insert(&mut self, network: &str, value: Value) -> &mut TestGeoDb {
        let net: IpNet = network
            .parse()
            .unwrap_or_else(|e| panic!("`{network}` is not a CIDR: {e}"));
        self.writer
            .insert_value_merged(net, value, MergeStrategy::TopLevelMerge)
            .unwrap_or_else(|e| panic!("cannot insert {network}: {e}"));
        self
    }
}

/// The GeoLite2-City layout of `record`.
fn city_value(record: &CityRecord<'_>) -> Value {
    let mut city = Fields::default();
    city.put_map("continent", {
        let mut m = Fields::default();
        m.text("code", record.continent_code);
        m.put_map("names", english(record.continent));
        m
    });
    city.put_map(
        "country",
        country(record.country_code, record.country, record.is_eu),
    );
    city.put_map(
        "registered_country",
        country(
            record.registered_country_code,
            record.registered_country,
            record.registered_is_eu,
        ),
    );
    if !record.subdivisions.is_empty() {
        let subdivisions = record
            .subdivisions
            .iter()
            .map(|name| {
                let mut m = Fields::default();
                m.put_map("names", english(name));
                m.into_value()
            })
            .collect();
        city.put("subdivisions", Value::Array(subdivisions));
    }
    city.put_map("city", {
        let mut m = Fields::default();
        m.put_map("names", english(record.city));
        m
    });
    city.put_map("postal", {
        let mut m = Fields::default();
        m.text("code", record.postal_code);
        m
    });
    city.put_map("location", {
        let mut m = Fields::default();
        if let Some(latitude) = record.latitude {
            m.put("latitude", Value::from(latitude));
        }
        if let Some(longitude) = record.longitude {
            m.put("longitude", Value::from(longitude));
        }
        if let Some(radius) = record.accuracy_radius {
            m.put("accuracy_radius", Value::from(radius));
        }
        if let Some(metro) = record.metro_code {
            m.put("metro_code", Value::from(metro));
        }
        m.text("time_zone", record.time_zone);
        m
    });
    city.into_value()
}

/// A `country` or `registered_country` map.
fn country(iso_code: &str, name: &str, is_eu: bool) -> Fields {
    let mut m = Fields::default();
    m.text("iso_code", iso_code);
    m.put_map("names", english(name));
    if is_eu {
        m.put("is_in_european_union", Value::from(true));
    }
    m
}

/// A `names` map with only the English name.
fn english(name: &str) -> Fields {
    let mut m = Fields::default();
    m.text("en", name);
    m
}

/// A map under construction that leaves out empty strings and empty sub-maps.
#[derive(Default)]
struct Fields(BTreeMap<String, Value>);

impl Fields {
    fn put(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_owned(), value);
    }

    fn text(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.put(key, Value::from(value));
        }
    }

    fn put_map(&mut self, key: &str, map: Fields) {
        if !map.0.is_empty() {
            self.put(key, map.into_value());
        }
    }

    fn into_value(self) -> Value {
        Value::Map(self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use maxminddb::{geoip2, Reader};

    use super::*;

    fn london() -> CityRecord<'static> {
        CityRecord {
            continent_code: "EU",
            continent: "Europe",
            country_code: "GB",
            country: "United Kingdom",
            registered_country_code: "SE",
            registered_country: "Sweden",
            registered_is_eu: true,
            subdivisions: &["England", "Westminster"],
            city: "London",
            postal_code: "SW1A",
            latitude: Some(51.5142),
            longitude: Some(-0.0931),
            accuracy_radius: Some(10),
            time_zone: "Europe/London",
            ..CityRecord::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sample() -> Vec<u8> {
        let mut db = TestGeoDb::new("GeoLite2-City");
        db.city("81.2.69.0/24", &london())
            .asn(
                "81.2.69.0/24",
                &AsnRecord {
                    number: 20712,
                    organization: "Andrews & Arnold Ltd",
                },
            )
            .city(
                "2001:db8:100::/40",
                &CityRecord {
                    country_code: "US",
                    country: "United States",
                    city: "Strongsville",
                    metro_code: Some(510),
                    ..CityRecord::default()
                },
            );
        db.to_bytes()
    }

    #[test]
    fn ipv4_records_read_back_in_the_city_and_asn_layouts() {
        let bytes = sample();
        let reader = Reader::from_source(bytes.as_slice()).unwrap();
        assert_eq!(reader.metadata().database_type, "GeoLite2-City");
        assert_eq!(reader.metadata().ip_version, 6);
        let found = reader.lookup(ip("81.2.69.160")).unwrap();
        let city: geoip2::City = found.decode().unwrap().unwrap();
        assert_eq!(city.city.names.english, Some("London"));
        assert_eq!(city.continent.code, Some("EU"));
        assert_eq!(city.continent.names.english, Some("Europe"));
        assert_eq!(city.country.iso_code, Some("GB"));
        assert_eq!(city.country.names.english, Some("United Kingdom"));
        assert_eq!(city.country.is_in_european_union, None);
        assert_eq!(city.registered_country.iso_code, Some("SE"));
        assert_eq!(city.registered_country.is_in_european_union, Some(true));
        let subdivisions: Vec<_> = city.subdivisions.iter().map(|s| s.names.english).collect();
        assert_eq!(subdivisions, [Some("England"), Some("Westminster")]);
        assert_eq!(city.postal.code, Some("SW1A"));
        assert_eq!(city.location.latitude, Some(51.5142));
        assert_eq!(city.location.longitude, Some(-0.0931));
        assert_eq!(city.location.accuracy_radius, Some(10));
        assert_eq!(city.location.metro_code, None);
        assert_eq!(city.location.time_zone, Some("Europe/London"));
        let asn: geoip2::Asn = found.decode().unwrap().unwrap();
        assert_eq!(asn.autonomous_system_number, Some(20712));
        assert_eq!(
            asn.autonomous_system_organization,
            Some("Andrews & Arnold Ltd")
        );
        // The same network as an IPv4-mapped IPv6 address.
        let mapped = reader.lookup(ip("::ffff:81.2.69.1")).unwrap();
        let city: geoip2::City = mapped.decode().unwrap().unwrap();
        assert_eq!(city.city.names.english, Some("London"));
    }

    #[test]
    fn ipv6_records_read_back() {
        let bytes = sample();
        let reader = Reader::from_source(bytes.as_slice()).unwrap();
        let found = reader.lookup(ip("2001:db8:1ff::1")).unwrap();
        let city: geoip2::City = found.decode().unwrap().unwrap();
        assert_eq!(city.city.names.english, Some("Strongsville"));
        assert_eq!(city.country.iso_code, Some("US"));
        assert_eq!(city.location.metro_code, Some(510));
        assert_eq!(city.location.latitude, None);
        let asn: geoip2::Asn = found.decode().unwrap().unwrap();
        assert_eq!(asn.autonomous_system_number, None);
    }

    #[test]
    fn addresses_outside_every_network_have_no_record() {
        let bytes = sample();
        let reader = Reader::from_source(bytes.as_slice()).unwrap();
        for outside in ["81.2.70.1", "10.0.0.1", "2001:db8:200::1", "::1"] {
            let found = reader.lookup(ip(outside)).unwrap();
            assert!(!found.has_data(), "{outside}");
            assert!(found.decode::<geoip2::City>().unwrap().is_none());
        }
    }

    #[test]
    fn a_written_file_opens() {
        let dir = std::env::temp_dir().join(format!("ig-mmdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("asn.mmdb");
        let mut db = TestGeoDb::new("GeoLite2-ASN");
        db.asn(
            "192.0.2.0/24",
            &AsnRecord {
                number: 64_496,
                organization: "",
            },
        );
        db.write(&path);
        let reader = Reader::open_readfile(&path).unwrap();
        let asn: geoip2::Asn = reader
            .lookup(ip("192.0.2.7"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(asn.autonomous_system_number, Some(64_496));
        assert_eq!(asn.autonomous_system_organization, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
