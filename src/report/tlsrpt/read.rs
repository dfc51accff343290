//! Streaming reader of a TLS report: serde visitors that build the typed
//! report as the JSON goes by, without a tree of the document, so memory
//! grows with what is kept (bounded by the limits), never with a
//! `serde_json::Value` of every failure detail.
//!
//! Every value is read leniently (any JSON type is accepted where a value
//! is expected) and checked afterwards, so that an error names its JSON
//! pointer and what was found there. An error found inside a visitor is
//! kept in `Ctx::failure`; serde only carries a placeholder up.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::convert::{self, Fields};
use super::{FailureDetail, TlsPolicyResult, TlsRptError};
use crate::report::ParseLimits;

/// Warnings kept per report.
const MAX_WARNINGS: usize = 50;

/// What the visitors share: the limits, the warnings, the first error.
pub(super) struct Ctx<'a> {
    pub(super) limits: &'a ParseLimits,
    pub(super) domain_hint: Option<&'a str>,
    pub(super) warnings: Vec<String>,
    warned: Vec<&'static str>,
    pub(super) failure: Option<TlsRptError>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(limits: &'a ParseLimits, domain_hint: Option<&'a str>) -> Self {
        Ctx {
            limits,
            domain_hint,
            warnings: Vec::new(),
            warned: Vec::new(),
            failure: None,
        }
    }

    pub(super) fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        } else if self.warnings.len() == MAX_WARNINGS {
            self.warnings.push("further warnings omitted".to_string());
        }
    }

    /// A warning given once per report for each `kind` (a count missing
    /// from each of 10,000 failure details is one warning).
    pub(super) fn warn_once(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        if !self.warned.contains(&kind) {
            self.warned.push(kind);
            self.warn(message());
        }
    }

    /// Keeps `error` and returns the placeholder serde carries up.
    pub(super) fn fail<E: de::Error>(&mut self, error: TlsRptError) -> E {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
        E::custom("invalid TLS report")
    }
}

/// Any JSON value where one value is expected. Arrays and objects are
/// skipped, only their kind is kept (for the error message).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Array,
    Object,
}

impl Scalar {
    /// How the value is named in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(value) => format!("the boolean {value}"),
            Scalar::Unsigned(value) => format!("the number {value}"),
            Scalar::Signed(value) => format!("the number {value}"),
            Scalar::Float(value) => format!("the number {value}"),
            Scalar::Text(text) => format!("the string {:?}", truncate(text, 60)),
            Scalar::Array => "an array".to_string(),
            Scalar::Object => "an object".to_string(),
        }
    }
}

pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
        Ok(Scalar::Signed(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(value))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(value.to_string()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// A value of the wrong shape, met where an object or an array belongs:
/// the visitor's `wrong` method decides what it means.
macro_rules! other_shapes {
    () => {
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            self.wrong(Scalar::Bool(value))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            self.wrong(Scalar::Unsigned(value))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            self.wrong(Scalar::Signed(value))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            self.wrong(Scalar::Float(value))
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            self.wrong(Scalar::Text(value.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.wrong(Scalar::Null)
        }
    };
}

/// Skips an array met where an object belongs.
macro_rules! array_is_wrong {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            self.wrong(Scalar::Array)
        }
    };
}

/// Skips an object met where an array belongs.
macro_rules! object_is_wrong {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            self.wrong(Scalar::Object)
        }
    };
}

/// The top level, as read: which fields were there, and the policies
/// already converted.
#[derive(Default)]
pub(super) struct RawRoot {
    pub(super) organization_name: Option<Scalar>,
    pub(super) report_id: Option<Scalar>,
    pub(super) contact_info: Option<Scalar>,
    pub(super) date_range: Option<Fields>,
    pub(super) policies: Option<Vec<TlsPolicyResult>>,
    /// A field named but null or of the wrong shape still says "I am a TLS report".
    pub(super) named_fields: usize,
}

pub(super) enum Root {
    Object(RawRoot),
    /// Not a JSON object at all.
    Other,
}

pub(super) struct RootSeed<'c, 'a> {
    pub(super) ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_, '_> {
    type Value = Root;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Root, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl RootSeed<'_, '_> {
    fn wrong<E: de::Error>(self, _found: Scalar) -> Result<Root, E> {
        Ok(Root::Other)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_, '_> {
    type Value = Root;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TLS report object")
    }
    other_shapes!();
    array_is_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root, A::Error> {
        let mut root = RawRoot::default();
        while let Some(key) = map.next_key::<String>()? {
            let named = match key.as_str() {
                "organization-name" => {
                    root.organization_name = Some(map.next_value()?);
                    true
                }
                "report-id" => {
                    root.report_id = Some(map.next_value()?);
                    true
                }
                "date-range" => {
                    root.date_range = Some(map.next_value()?);
                    true
                }
                "policies" => {
                    let seed = PoliciesSeed {
                        ctx: &mut *self.ctx,
                    };
                    root.policies = map.next_value_seed(seed)?;
                    true
                }
                "contact-info" => {
                    root.contact_info = Some(map.next_value()?);
                    false
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    false
                }
            };
            root.named_fields += usize::from(named);
        }
        Ok(Root::Object(root))
    }
}

/// `policies`: converted one by one as they are read, up to the limit.
struct PoliciesSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for PoliciesSeed<'_, '_> {
    type Value = Option<Vec<TlsPolicyResult>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl PoliciesSeed<'_, '_> {
    fn wrong<E: de::Error>(self, found: Scalar) -> Result<Option<Vec<TlsPolicyResult>>, E> {
        if found == Scalar::Null {
            return Ok(None);
        }
        Err(self
            .ctx
            .fail(convert::wrong_type("/policies", "an array", &found)))
    }
}

impl<'de> Visitor<'de> for PoliciesSeed<'_, '_> {
    type Value = Option<Vec<TlsPolicyResult>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of policies")
    }
    other_shapes!();
    object_is_wrong!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut policies = Vec::new();
        loop {
            let pointer = format!("/policies/{}", policies.len());
            let seed = PolicySeed {
                ctx: &mut *self.ctx,
                pointer,
            };
            let Some(policy) = seq.next_element_seed(seed)? else {
                return Ok(Some(policies));
            };
            policies.push(policy);
            let limit = self.ctx.limits.max_tls_policies;
            if policies.len() as u64 > limit {
                return Err(self.ctx.fail(TlsRptError::TooMany {
                    pointer: "/policies".to_string(),
                    what: "policies",
                    limit,
                    setting: "decode.max_tls_policies",
                }));
            }
        }
    }
}

/// One entry of `policies`: `policy`, `summary` and `failure-details`.
struct PolicySeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    pointer: String,
}

impl<'de> DeserializeSeed<'de> for PolicySeed<'_, '_> {
    type Value = TlsPolicyResult;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl PolicySeed<'_, '_> {
    fn wrong<E: de::Error>(self, found: Scalar) -> Result<TlsPolicyResult, E> {
        Err(self
            .ctx
            .fail(convert::wrong_type(&self.pointer, "an object", &found)))
    }
}

impl<'de> Visitor<'de> for PolicySeed<'_, '_> {
    type Value = TlsPolicyResult;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a policy object")
    }
    other_shapes!();
    array_is_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut policy: Option<Fields> = None;
        let mut summary: Option<Fields> = None;
        let mut details = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "policy" => policy = Some(map.next_value()?),
                "summary" => summary = Some(map.next_value()?),
                "failure-details" => {
                    let seed = DetailsSeed {
                        ctx: &mut *self.ctx,
                        pointer: format!("{}/failure-details", self.pointer),
                    };
                    details = map.next_value_seed(seed)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        convert::policy_result(self.ctx, &self.pointer, policy, summary, details)
            .map_err(|error| self.ctx.fail(error))
    }
}

/// `failure-details`: converted one by one as they are read, up to the limit.
struct DetailsSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    pointer: String,
}

impl<'de> DeserializeSeed<'de> for DetailsSeed<'_, '_> {
    type Value = Vec<FailureDetail>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl DetailsSeed<'_, '_> {
    fn wrong<E: de::Error>(self, found: Scalar) -> Result<Vec<FailureDetail>, E> {
        if found == Scalar::Null {
            return Ok(Vec::new());
        }
        Err(self
            .ctx
            .fail(convert::wrong_type(&self.pointer, "an array", &found)))
    }
}

impl<'de> Visitor<'de> for DetailsSeed<'_, '_> {
    type Value = Vec<FailureDetail>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of failure details")
    }
    other_shapes!();
    object_is_wrong!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut details = Vec::new();
        let limit = self.ctx.limits.max_tls_failure_details;
        while let Some(fields) = seq.next_element::<Fields>()? {
            let pointer = format!("{}/{}", self.pointer, details.len());
            let detail = convert::failure_detail(self.ctx, &pointer, fields)
                .map_err(|error| self.ctx.fail(error))?;
            details.push(detail);
            if details.len() as u64 > limit {
                return Err(self.ctx.fail(TlsRptError::TooMany {
                    pointer: self.pointer.clone(),
                    what: "failure details",
                    limit,
                    setting: "decode.max_tls_failure_details",
                }));
            }
        }
        Ok(details)
    }
}

impl<'de> de::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldsVisitor)
    }
}

/// An object of values (`date-range`, `policy`, `summary`, one failure
/// detail), or what was found instead of an object.
struct FieldsVisitor;

impl FieldsVisitor {
    fn wrong<E: de::Error>(self, found: Scalar) -> Result<Fields, E> {
        Ok(Fields::NotAnObject(found))
    }
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    other_shapes!();
    array_is_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == "policy-string" || key == "mx-host" {
                map.next_value::<ListOrScalar>()?
            } else {
                ListOrScalar::Scalar(map.next_value()?)
            };
            fields.push((key, value));
        }
        Ok(Fields::Object(fields))
    }
}

/// A value that may be a list of strings (`policy-string`, `mx-host`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ListOrScalar {
    Scalar(Scalar),
    List(Vec<Scalar>),
}

impl<'de> de::Deserialize<'de> for ListOrScalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListVisitor)
    }
}

struct ListVisitor;

impl ListVisitor {
    fn wrong<E: de::Error>(self, found: Scalar) -> Result<ListOrScalar, E> {
        Ok(ListOrScalar::Scalar(found))
    }
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = ListOrScalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    // A single string is a list of one; anything else is checked by the caller.
    other_shapes!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListOrScalar, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Scalar>()? {
            items.push(item);
        }
        Ok(ListOrScalar::List(items))
    }
    object_is_wrong!();
}
