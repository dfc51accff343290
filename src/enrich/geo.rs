//! Country and ASN from MaxMind-format (`.mmdb`) files.
//!
//! Free databases come in two record layouts, and both are read:
//! - nested, as MaxMind GeoLite2 and DB-IP Lite: `country.iso_code`,
//!   `autonomous_system_number`, `autonomous_system_organization`;
//! - flat, as ip-location-db and IPinfo Lite: `country_code`, `asn`
//!   (a number or `"AS15169"`), `as_name`, `as_domain`.
//!
//! Files are loaded into memory and swapped whole when the file on disk
//! changes (downloads are replaced by an atomic rename), so lookups never
//! see a half-written database.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// What the databases say about one IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoInfo {
    pub country: Option<Arc<str>>,
    pub asn: Option<u32>,
    pub as_name: Option<Arc<str>>,
    pub as_domain: Option<Arc<str>>,
}

impl GeoInfo {
    /// Fills what is still missing from `other` (an earlier file wins).
    /// The AS fields travel together: an AS domain from one file must not
    /// be paired with another file's AS number.
    fn fill_from(&mut self, other: &GeoInfo) {
        if self.country.is_none() {
            self.country = other.country.clone();
        }
        if self.asn.is_none()
            && self.as_name.is_none()
            && (other.asn.is_some() || other.as_name.is_some())
        {
            self.asn = other.asn;
            self.as_name = other.as_name.clone();
            self.as_domain = other.as_domain.clone();
        }
    }

    fn is_complete(&self) -> bool {
        self.country.is_some() && (self.asn.is_some() || self.as_name.is_some())
    }
}

/// The configured database files, in order.
pub struct GeoDatabases {
    files: Vec<GeoFile>,
}

struct GeoFile {
    path: PathBuf,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// The last load error was already logged (one warning, not one per check).
    warned: Mutex<Option<String>>,
}

struct Loaded {
    reader: maxminddb::Reader<Vec<u8>>,
    stamp: FileStamp,
    /// Decoded records by their offset in the file: many networks share one
    /// record, and decoding is most of a lookup's cost. Cleared when full.
    decoded: Mutex<HashMap<usize, GeoInfo>>,
}

const DECODED_CACHE_ENTRIES: usize = 65_536;

/// Identifies one version of a file: a replaced file has a new inode, a
/// rewritten one a new length or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

impl GeoDatabases {
    /// No databases: every lookup is empty.
    pub fn none() -> Self {
        GeoDatabases { files: Vec::new() }
    }

    /// Opens each file now; one that is missing or broken is skipped with a
    /// warning and picked up later if it appears.
    pub fn open(paths: &[PathBuf]) -> Self {
        let databases = GeoDatabases {
            files: paths
                .iter()
                .map(|path| GeoFile {
                    path: path.clone(),
                    loaded: RwLock::new(None),
                    warned: Mutex::new(None),
                })
                .collect(),
        };
        databases.reload_if_changed();
        databases
    }

    /// How many files are loaded.
    pub fn loaded(&self) -> usize {
        self.files
            .iter()
            .filter(|file| file.current().is_some())
            .count()
    }

    /// Whether a loaded database comes from DB-IP (its licence, CC BY 4.0,
    /// requires an attribution link wherever its data is shown).
    /// Only loaded files count: `dmarcd geo update`'s file names are
    /// configured before anything is downloaded.
    pub fn includes_dbip(&self) -> bool {
        self.files.iter().any(|file| {
            let named = file
                .path
                .to_string_lossy()
                .to_ascii_lowercase()
                .contains("dbip");
            file.current().is_some_and(|loaded| {
                let meta = loaded.reader.metadata();
                let kind = meta.database_type.to_ascii_lowercase();
                named
                    || kind.contains("dbip")
                    || kind.contains("db-ip")
                    || meta
                        .description
                        .values()
                        .any(|text| text.to_ascii_lowercase().contains("db-ip"))
            })
        })
    }

    /// Re-reads files that changed on disk; returns how many were (re)loaded.
    pub fn reload_if_changed(&self) -> usize {
        self.files
            .iter()
            .filter(|file| file.reload_if_changed())
            .count()
    }

    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let mut info = GeoInfo::default();
        for file in &self.files {
            if let Some(loaded) = file.current() {
                info.fill_from(&loaded.lookup(ip));
                if info.is_complete() {
                    break;
                }
            }
        }
        info
    }
}

impl GeoFile {
    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn reload_if_changed(&self) -> bool {
        let stamp = match FileStamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound && self.current().is_none() =>
            {
                // Not downloaded yet: said once, as information.
                let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
                if warned.is_none() {
                    tracing::info!(
                        path = %self.path.display(),
                        "IP database not there (yet): country and ASN stay empty until it is; `dmarcd geo update` downloads DB-IP's free ones"
                    );
                    *warned = Some("missing".into());
                }
                return false;
            }
            Err(error) => {
                // A file that disappears keeps serving from memory.
                self.warn_once(format!(
                    "cannot read it: {error}; enrichment from it is skipped"
                ));
                return false;
            }
        };
        if self.current().is_some_and(|loaded| loaded.stamp == stamp) {
            return false;
        }
        match maxminddb::Reader::open_readfile(&self.path) {
            Ok(reader) => {
                tracing::info!(
                    path = %self.path.display(),
                    kind = %reader.metadata().database_type,
                    "loaded IP database"
                );
                let loaded = Loaded {
                    reader,
                    stamp,
                    decoded: Mutex::new(HashMap::new()),
                };
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(loaded));
                *self.warned.lock().unwrap_or_else(|e| e.into_inner()) = None;
                true
            }
            Err(error) => {
                self.warn_once(format!("not a valid MaxMind database: {error}"));
                false
            }
        }
    }

    fn warn_once(&self, message: String) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.as_deref() != Some(message.as_str()) {
            tracing::warn!(path = %self.path.display(), "IP database: {message}");
            *warned = Some(message);
        }
    }
}

impl Loaded {
    fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let Ok(result) = self.reader.lookup(ip) else {
            return GeoInfo::default();
        };
        let Some(offset) = result.offset() else {
            return GeoInfo::default();
        };
        if let Some(info) = self
            .decoded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&offset)
        {
            return info.clone();
        }
        // A record that does not decode is treated as empty: one odd entry
        // in a third-party file must not stop enrichment.
        let info = match result.decode::<RawRecord<'_>>() {
            Ok(Some(raw)) => raw.into_info(),
            _ => GeoInfo::default(),
        };
        let mut decoded = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        if decoded.len() >= DECODED_CACHE_ENTRIES {
            decoded.clear();
        }
        decoded.insert(offset, info.clone());
        info
    }
}

/// What `reader` says about `ip`, uncached: the check of a new download.
pub(super) fn read_record<S: AsRef<[u8]>>(reader: &maxminddb::Reader<S>, ip: IpAddr) -> GeoInfo {
    match reader
        .lookup(ip)
        .and_then(|result| result.decode::<RawRecord<'_>>())
    {
        Ok(Some(raw)) => raw.into_info(),
        _ => GeoInfo::default(),
    }
}

/// The fields dmarcd reads, from either layout.
#[derive(Default)]
struct RawRecord<'a> {
    country: Option<Cow<'a, str>>,
    registered_country: Option<Cow<'a, str>>,
    country_code: Option<Cow<'a, str>>,
    asn: Option<u32>,
    as_name: Option<Cow<'a, str>>,
    as_domain: Option<Cow<'a, str>>,
}

impl RawRecord<'_> {
    fn into_info(self) -> GeoInfo {
        let country = self
            .country
            .or(self.country_code)
            .or(self.registered_country)
            .filter(|code| code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(|code| Arc::from(code.to_ascii_uppercase()));
        let text = |value: Option<Cow<'_, str>>| {
            value
                .map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty())
                .map(Arc::from)
        };
        GeoInfo {
            country,
            asn: self.asn.filter(|&asn| asn != 0),
            as_name: text(self.as_name),
            as_domain: text(self.as_domain).map(|d: Arc<str>| Arc::from(d.to_ascii_lowercase())),
        }
    }
}

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = RawRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut record = RawRecord::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                // A map with `iso_code` (MaxMind, DB-IP) or a country name
                // (IPinfo, which also has `country_code`).
                "country" => record.country = map.next_value::<Country<'de>>()?.0,
                "registered_country" => {
                    record.registered_country = map.next_value::<Country<'de>>()?.0
                }
                "country_code" => record.country_code = map.next_value::<Text<'de>>()?.0,
                "autonomous_system_number" | "asn" => record.asn = map.next_value::<AsNumber>()?.0,
                "autonomous_system_organization" | "as_name" | "asn_org" => {
                    record.as_name = map.next_value::<Text<'de>>()?.0
                }
                "as_domain" => record.as_domain = map.next_value::<Text<'de>>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(record)
    }
}

/// A string, or nothing for any other type.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// `{"iso_code": "US", …}` → `US`; a bare string (a country name) → nothing.
struct Country<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Country<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountryVisitor;
        impl<'de> Visitor<'de> for CountryVisitor {
            type Value = Country<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a country map or name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut code = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "iso_code" {
                        code = map.next_value::<Text<'de>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Country(code))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Country(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Country(None))
            }
        }
        deserializer.deserialize_any(CountryVisitor)
    }
}

/// An AS number as an integer or as `"AS15169"`.
struct AsNumber(Option<u32>);

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AsVisitor;
        impl<'de> Visitor<'de> for AsVisitor {
            type Value = AsNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an AS number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(AsNumber(u32::try_from(v).ok()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(AsNumber(u32::try_from(v).ok()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let digits = v.trim().trim_start_matches("AS").trim_start_matches("as");
                Ok(AsNumber(digits.parse().ok()))
            }
        }
        deserializer.deserialize_any(AsVisitor)
    }
}
