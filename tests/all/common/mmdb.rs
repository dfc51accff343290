//! Tiny MaxMind-format databases in both record layouts dmarcd reads,
//! built with mmdb-writer.

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::Writer;
use serde_json::{json, Value};

/// Builds a database from (network, record) pairs.
pub fn build(kind: &str, networks: &[(&str, Value)]) -> Vec<u8> {
    build_at(kind, std::time::SystemTime::now(), networks)
}

/// Likewise, stamped as built at `built` (the metadata's build_epoch).
pub fn build_at(kind: &str, built: std::time::SystemTime, networks: &[(&str, Value)]) -> Vec<u8> {
    let mut writer = Writer::builder(kind).build_epoch(built).build();
    for (network, record) in networks {
        let network: IpNet = network.parse().unwrap();
        writer.insert(network, record).unwrap();
    }
    writer.to_bytes().unwrap()
}

/// Stamped as built at `built`, with a description as DB-IP's files have.
pub fn build_described(
    kind: &str,
    built: std::time::SystemTime,
    networks: &[(&str, Value)],
) -> Vec<u8> {
    let mut writer = Writer::builder(kind)
        .build_epoch(built)
        .description(&[("en", "IP to location test database, in DB-IP's layout")])
        .build();
    for (network, record) in networks {
        let network: IpNet = network.parse().unwrap();
        writer.insert(network, record).unwrap();
    }
    writer.to_bytes().unwrap()
}

/// A record as MaxMind GeoLite2 and DB-IP Lite write it (country and ASN
/// merged here; the real downloads are separate files of the same shape).
pub fn nested(country: &str, asn: u32, organization: &str) -> Value {
    json!({
        "continent": {"code": "NA", "names": {"en": "North America"}},
        "country": {"iso_code": country, "geoname_id": 6252001, "names": {"en": "Somewhere"}},
        "registered_country": {"iso_code": country},
        "autonomous_system_number": asn,
        "autonomous_system_organization": organization,
    })
}

/// A record as IPinfo Lite writes it (ip-location-db uses the same flat keys).
pub fn flat(country: &str, asn: &str, as_name: &str, as_domain: &str) -> Value {
    json!({
        "country": "Germany",
        "country_code": country,
        "continent": "Europe",
        "continent_code": "EU",
        "asn": asn,
        "as_name": as_name,
        "as_domain": as_domain,
    })
}
