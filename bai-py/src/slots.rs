//! `bai.ResourceSlot` and `bai.BinarySize`: bai-core's slot arithmetic and byte sizes.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use bai_core::{BinarySize, Decimal, KnownSlots, ResourceSlot, SlotType};
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyIterator, PyList, PyString, PyTuple};

use crate::convert::is_decimal;
use crate::errors::{self, Kind};

/// A set of exact resource amounts by slot name; see `bai/_internal.pyi`.
#[pyclass(name = "ResourceSlot", module = "bai", frozen, mapping)]
#[derive(Debug, Clone)]
pub struct PyResourceSlot(pub ResourceSlot);

/// A size in bytes that parses and prints like `4g`; see `bai/_internal.pyi`.
#[pyclass(name = "BinarySize", module = "bai", frozen)]
#[derive(Debug, Clone)]
pub struct PyBinarySize(pub BinarySize);

/// Registers the classes on the native module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyResourceSlot>()?;
    m.add_class::<PyBinarySize>()?;
    Ok(())
}

fn slot_value_error(slot: &str, reason: String) -> PyErr {
    errors::core(bai_core::Error::InvalidSlotValue { slot: slot.to_string(), reason })
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str(text).ok().or_else(|| Decimal::from_scientific(text).ok())
}

/// Whether a slot counts bytes when nothing says otherwise: bai-core's rule for requests without
/// known slots (a name containing `mem`).
fn is_bytes_slot(name: &str) -> bool {
    name.contains("mem")
}

/// One amount from Python: `int`, `float`, `str`, `decimal.Decimal` or `BinarySize`; a string
/// that is not a number is read as a size (`"4g"`) for a bytes slot.
pub(crate) fn amount_from_py(slot: &str, value: &Bound<'_, PyAny>) -> PyResult<Decimal> {
    if value.is_instance_of::<PyBool>() {
        return Err(slot_value_error(slot, format!("expected a number or a string, got the bool {value}")));
    }
    if let Ok(size) = value.cast::<PyBinarySize>() {
        return Ok(Decimal::from(size.get().0.bytes()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_cow()?;
        if let Some(d) = parse_decimal(&text) {
            return Ok(d);
        }
        if is_bytes_slot(slot) {
            return BinarySize::parse(text.trim())
                .map(Decimal::from)
                .map_err(|e| slot_value_error(slot, format!("{text:?} is neither a decimal number nor a size ({e})")));
        }
        return Err(slot_value_error(slot, format!("{text:?} is not a decimal number")));
    }
    let numeric = value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() || is_decimal(value)?;
    if !numeric {
        let type_name = value.get_type().name()?.to_string();
        return Err(slot_value_error(
            slot,
            format!("expected an int, a float, a str, a decimal.Decimal or a BinarySize, got {type_name}"),
        ));
    }
    // repr() of a float is the shortest text that reads back to it (0.1 stays 0.1)
    let text = value.repr()?.to_cow()?.to_string();
    let text = text.strip_prefix("Decimal('").and_then(|t| t.strip_suffix("')")).unwrap_or(&text).to_string();
    parse_decimal(&text).ok_or_else(|| {
        slot_value_error(slot, format!("{text} is not a finite decimal number within ±7.9e28 with at most 28 decimals"))
    })
}

/// A `ResourceSlot` from a `ResourceSlot`, a dict, or any mapping of slot names to amounts.
pub(crate) fn slot_from_py(obj: &Bound<'_, PyAny>) -> PyResult<ResourceSlot> {
    if let Ok(slot) = obj.cast::<PyResourceSlot>() {
        return Ok(slot.get().0.clone());
    }
    let mut out = ResourceSlot::new();
    let mut add = |name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>| -> PyResult<()> {
        let Ok(name) = name.cast::<PyString>() else {
            return Err(errors::raise(
                Kind::InvalidSlot,
                format!("invalid slot name {}: slot names are strings", name.repr()?),
                &[("reason", "slot names are strings")],
            ));
        };
        let name = name.to_cow()?;
        let amount = amount_from_py(&name, value)?;
        out.set(&name, amount).map_err(errors::core)
    };
    if let Ok(dict) = obj.cast::<PyDict>() {
        for (name, value) in dict.iter() {
            add(&name, &value)?;
        }
        return Ok(out);
    }
    if obj.hasattr("items")? && !obj.is_instance_of::<PyString>() {
        for pair in obj.call_method0("items")?.try_iter()? {
            let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            add(&name, &value)?;
        }
        return Ok(out);
    }
    let type_name = obj.get_type().name()?.to_string();
    Err(errors::raise(
        Kind::InvalidSlot,
        format!("expected a mapping of slot names to amounts, got {type_name}"),
        &[("reason", "not a mapping")],
    ))
}

/// A scalar factor for `slot * k`: `None` when `value` is not a number (→ `NotImplemented`).
fn scalar_from_py(value: &Bound<'_, PyAny>) -> PyResult<Option<Decimal>> {
    if value.is_instance_of::<PyBool>() {
        return Ok(None);
    }
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() || is_decimal(value)? {
        return amount_from_py("factor", value).map(Some);
    }
    Ok(None)
}

/// The other operand of a slot operation: a `ResourceSlot` or a dict; `None` otherwise.
fn operand(other: &Bound<'_, PyAny>) -> PyResult<Option<ResourceSlot>> {
    if other.is_instance_of::<PyResourceSlot>() || other.is_instance_of::<PyDict>() {
        return slot_from_py(other).map(Some);
    }
    Ok(None)
}

fn known_slots(known: Option<&Bound<'_, PyAny>>) -> PyResult<Option<KnownSlots>> {
    let Some(known) = known else { return Ok(None) };
    let mut out = KnownSlots::new();
    let dict = known.cast::<PyDict>().map_err(|_| {
        errors::raise(
            Kind::InvalidSlot,
            "known slots must be a dict of slot names to 'count', 'bytes' or 'unique'",
            &[("reason", "not a dict")],
        )
    })?;
    for (name, kind) in dict.iter() {
        let name: String = name.extract()?;
        let kind: String = kind.extract()?;
        let kind = SlotType::from_str(&kind).map_err(errors::core)?;
        out.insert(&name, kind).map_err(errors::core)?;
    }
    Ok(Some(out))
}

/// A Python value of a user's request as JSON, the input `ResourceSlot::from_user_input` takes.
fn request_value_json(slot: &str, value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    if value.is_instance_of::<PyBool>() {
        return Err(slot_value_error(slot, format!("expected a number or a string, got the bool {value}")));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(serde_json::Value::String(text.to_cow()?.to_string()));
    }
    if let Ok(size) = value.cast::<PyBinarySize>() {
        return Ok(serde_json::Value::from(size.get().0.bytes()));
    }
    // numbers go through their exact decimal text
    Ok(serde_json::Value::String(amount_from_py(slot, value)?.to_string()))
}

fn decimal_text(d: Decimal) -> String {
    d.normalize().to_string()
}

impl PyResourceSlot {
    fn wrap(py: Python<'_>, slot: ResourceSlot) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, Self(slot))?.into_any())
    }
}

#[pymethods]
impl PyResourceSlot {
    #[new]
    #[pyo3(signature = (slots = None, /))]
    fn new(slots: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        match slots {
            None => Ok(Self(ResourceSlot::new())),
            Some(obj) => slot_from_py(obj).map(Self),
        }
    }

    /// bai-core's `from_user_input`: what the API does with a user's resource request.
    #[staticmethod]
    #[pyo3(signature = (request, known = None))]
    fn from_user_input(request: &Bound<'_, PyAny>, known: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let known = known_slots(known)?;
        let mut input = serde_json::Map::new();
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = match request.cast::<PyDict>() {
            Ok(dict) => dict.iter().collect(),
            Err(_) => {
                return Err(errors::raise(
                    Kind::InvalidSlot,
                    "expected a dict of slot names to amounts",
                    &[("reason", "not a dict")],
                ))
            }
        };
        for (name, value) in items {
            let name: String = name.extract().map_err(|_| {
                errors::raise(Kind::InvalidSlot, "slot names are strings", &[("reason", "slot names are strings")])
            })?;
            let value = request_value_json(&name, &value)?;
            input.insert(name, value);
        }
        ResourceSlot::from_user_input(&input, known.as_ref()).map(Self).map_err(errors::core)
    }

    /// Parses the JSON form (`{"cpu": "2", "mem": "4294967296"}`).
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        serde_json::from_str::<ResourceSlot>(text).map(Self).map_err(|e| {
            errors::raise(Kind::InvalidSlot, format!("invalid ResourceSlot JSON: {e}"), &[("reason", &e.to_string())])
        })
    }

    /// The JSON form: values as exponent-free decimal strings.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0).map_err(|e| errors::raise(Kind::InvalidSlot, e.to_string(), &[]))
    }

    /// A plain dict of slot names to `decimal.Decimal`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (k, v) in self.0.iter() {
            dict.set_item(k, v)?;
        }
        Ok(dict)
    }

    /// The amount of a slot, zero when absent (a missing slot is zero in every operation).
    fn amount(&self, name: &str) -> Decimal {
        self.0.get(name)
    }

    #[pyo3(signature = (name, default = None))]
    fn get<'py>(&self, py: Python<'py>, name: &str, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        if self.0.contains(name) {
            return Ok(self.0.get(name).into_pyobject(py)?.into_any());
        }
        Ok(default.unwrap_or_else(|| py.None().into_bound(py)))
    }

    fn keys(&self) -> Vec<String> {
        self.0.iter().map(|(k, _)| k.to_string()).collect()
    }

    fn values(&self) -> Vec<Decimal> {
        self.0.iter().map(|(_, v)| v).collect()
    }

    fn items(&self) -> Vec<(String, Decimal)> {
        self.0.iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn __getitem__(&self, name: &str) -> PyResult<Decimal> {
        if self.0.contains(name) {
            Ok(self.0.get(name))
        } else {
            Err(pyo3::exceptions::PyKeyError::new_err(name.to_string()))
        }
    }

    fn __contains__(&self, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(match name.cast::<PyString>() {
            Ok(s) => self.0.contains(&s.to_cow()?),
            Err(_) => false,
        })
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        PyList::new(py, self.keys())?.try_iter()
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    fn __bool__(&self) -> bool {
        !self.0.is_zero()
    }

    /// Whether this request fits in `capacity` (the same as `self <= capacity`).
    fn fits_in(&self, capacity: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.0.fits_in(&slot_from_py(capacity)?))
    }

    /// The slots where this request exceeds `capacity`, with the amount missing in each.
    fn shortfall(&self, capacity: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self(self.0.shortfall(&slot_from_py(capacity)?)))
    }

    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    fn has_negative(&self) -> bool {
        self.0.has_negative()
    }

    fn without_zeros(&self) -> Self {
        Self(self.0.without_zeros())
    }

    /// `cpu=2 mem=4g`: bytes slots (`mem`, and those `known` says are bytes) printed as sizes.
    #[pyo3(signature = (known = None))]
    fn humanize(&self, known: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let known = known_slots(known)?.unwrap_or_default();
        Ok(self.0.to_humanized(&known))
    }

    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match operand(other)? {
            Some(o) => Self::wrap(py, self.0.checked_add(&o).map_err(errors::core)?),
            None => Ok(py.NotImplemented()),
        }
    }

    fn __radd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        // `sum(slots)` starts from the int 0
        if other.is_instance_of::<PyInt>()
            && !other.is_instance_of::<PyBool>()
            && other.extract::<i64>().ok() == Some(0)
        {
            return Self::wrap(py, self.0.clone());
        }
        match operand(other)? {
            Some(o) => Self::wrap(py, o.checked_add(&self.0).map_err(errors::core)?),
            None => Ok(py.NotImplemented()),
        }
    }

    fn __sub__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match operand(other)? {
            Some(o) => Self::wrap(py, self.0.checked_sub(&o).map_err(errors::core)?),
            None => Ok(py.NotImplemented()),
        }
    }

    fn __rsub__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match operand(other)? {
            Some(o) => Self::wrap(py, o.checked_sub(&self.0).map_err(errors::core)?),
            None => Ok(py.NotImplemented()),
        }
    }

    fn __mul__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match scalar_from_py(other)? {
            Some(k) => Self::wrap(py, self.0.checked_mul(k).map_err(errors::core)?),
            None => Ok(py.NotImplemented()),
        }
    }

    fn __rmul__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__mul__(py, other)
    }

    fn __neg__(&self) -> PyResult<Self> {
        self.0.checked_mul(Decimal::NEGATIVE_ONE).map(Self).map_err(errors::core)
    }

    fn __pos__(&self) -> Self {
        self.clone()
    }

    /// `==` treats a missing slot as zero; `<=` is "fits within" and `<` "fits and differs"; two
    /// sets where each has more of some slot are not comparable (every ordering is False).
    fn __richcmp__(&self, py: Python<'_>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let other = match (operand(other), op) {
            (Ok(Some(o)), _) => o,
            // `==` never raises: a dict that is not a valid slot set is simply not equal
            (Ok(None), _) | (Err(_), CompareOp::Eq | CompareOp::Ne) => return Ok(py.NotImplemented()),
            (Err(e), _) => return Err(e),
        };
        let ord = self.0.partial_cmp(&other);
        let result = match op {
            CompareOp::Eq => ord == Some(Ordering::Equal),
            CompareOp::Ne => ord != Some(Ordering::Equal),
            CompareOp::Lt => ord == Some(Ordering::Less),
            CompareOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            CompareOp::Gt => ord == Some(Ordering::Greater),
            CompareOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        };
        Ok(PyBool::new(py, result).to_owned().into_any().unbind())
    }

    /// Consistent with `==`: zero entries do not count.
    fn __hash__(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        for (k, v) in self.0.without_zeros().iter() {
            k.hash(&mut hasher);
            decimal_text(v).hash(&mut hasher);
        }
        hasher.finish()
    }

    fn __repr__(&self) -> String {
        let items: Vec<String> = self.0.iter().map(|(k, v)| format!("'{k}': '{}'", decimal_text(v))).collect();
        format!("ResourceSlot({{{}}})", items.join(", "))
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let constructor = py.get_type::<Self>().getattr("from_json")?;
        Ok((constructor, PyTuple::new(py, [self.to_json()?])?))
    }
}

/// A size from Python: `int` (bytes), `str` (`"4g"`, `"1.5 GiB"`) or `BinarySize`.
pub(crate) fn size_from_py(value: &Bound<'_, PyAny>) -> PyResult<BinarySize> {
    let invalid =
        |input: String, reason: &str| errors::core(bai_core::Error::InvalidSize { input, reason: reason.to_string() });
    if let Ok(size) = value.cast::<PyBinarySize>() {
        return Ok(size.get().0);
    }
    if let Ok(text) = value.cast::<PyString>() {
        return BinarySize::parse(&text.to_cow()?).map_err(errors::core);
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        if let Ok(bytes) = value.extract::<u64>() {
            return Ok(BinarySize::new(bytes));
        }
        let text = value.str()?.to_cow()?.to_string();
        let reason =
            if text.starts_with('-') { "sizes cannot be negative" } else { "too large: sizes are limited to 16 EiB" };
        return Err(invalid(text, reason));
    }
    let type_name = value.get_type().name()?.to_string();
    Err(invalid(
        value.repr()?.to_cow()?.to_string(),
        &format!("expected an int (bytes), a str such as \"4g\" or a BinarySize, got {type_name}"),
    ))
}

/// The other operand of a size operation: a `BinarySize` or an `int`; `None` otherwise.
fn size_operand(other: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    if other.is_instance_of::<PyBinarySize>() || (other.is_instance_of::<PyInt>() && !other.is_instance_of::<PyBool>())
    {
        return size_from_py(other).map(|s| Some(s.bytes()));
    }
    Ok(None)
}

fn size_overflow(what: String) -> PyErr {
    errors::raise(Kind::Overflow, what, &[])
}

impl PyBinarySize {
    fn wrap(py: Python<'_>, bytes: u64) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, Self(BinarySize::new(bytes)))?.into_any())
    }
}

#[pymethods]
impl PyBinarySize {
    #[new]
    fn new(value: &Bound<'_, PyAny>) -> PyResult<Self> {
        size_from_py(value).map(Self)
    }

    /// Parses a size; the same as the constructor with a string.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Self> {
        BinarySize::parse(text).map(Self).map_err(errors::core)
    }

    /// The JSON form (a number of bytes) read back; strings such as `"4g"` are accepted too.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        serde_json::from_str::<BinarySize>(text)
            .map(Self)
            .map_err(|e| errors::core(bai_core::Error::InvalidSize { input: text.to_string(), reason: e.to_string() }))
    }

    fn to_json(&self) -> String {
        self.0.bytes().to_string()
    }

    #[getter]
    fn bytes(&self) -> u64 {
        self.0.bytes()
    }

    /// The compact form, `512m`, `1.5g` (two decimals at most).
    fn short(&self) -> String {
        self.0.to_short_string()
    }

    /// The size in a fixed unit: `k`, `m`, `g`, `t`, `p`, `e`, or `" "` for bytes.
    fn in_unit(&self, unit: &str) -> PyResult<String> {
        let mut chars = unit.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => self.0.to_unit_string(c).map_err(errors::core),
            _ => Err(errors::core(bai_core::Error::InvalidSize {
                input: unit.to_string(),
                reason: "expected one unit letter: k, m, g, t, p, e or a space".into(),
            })),
        }
    }

    fn __int__(&self) -> u64 {
        self.0.bytes()
    }

    fn __index__(&self) -> u64 {
        self.0.bytes()
    }

    fn __bool__(&self) -> bool {
        self.0.bytes() != 0
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        let short = self.0.to_short_string();
        if BinarySize::parse(&short).ok() == Some(self.0) && short.parse::<u64>().is_err() {
            format!("BinarySize('{short}')")
        } else {
            format!("BinarySize({})", self.0.bytes())
        }
    }

    /// The same hash as the int of the same value, since they compare equal.
    fn __hash__(&self) -> u64 {
        self.0.bytes() % ((1u64 << 61) - 1)
    }

    fn __richcmp__(&self, py: Python<'_>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let other = match size_operand(other) {
            Ok(Some(o)) => o,
            // a negative int or a non-size is simply not equal
            _ => return Ok(py.NotImplemented()),
        };
        Ok(PyBool::new(py, op.matches(self.0.bytes().cmp(&other))).to_owned().into_any().unbind())
    }

    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(o) = size_operand(other)? else { return Ok(py.NotImplemented()) };
        let sum =
            self.0.bytes().checked_add(o).ok_or_else(|| {
                size_overflow(format!("{} + {} exceeds the largest size (16 EiB)", self.0.bytes(), o))
            })?;
        Self::wrap(py, sum)
    }

    fn __radd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__add__(py, other)
    }

    fn __sub__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(o) = size_operand(other)? else { return Ok(py.NotImplemented()) };
        let diff = self.0.bytes().checked_sub(o).ok_or_else(|| {
            size_overflow(format!("{} - {} would be negative; sizes are zero or more", self.0.bytes(), o))
        })?;
        Self::wrap(py, diff)
    }

    fn __rsub__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(o) = size_operand(other)? else { return Ok(py.NotImplemented()) };
        let diff = o.checked_sub(self.0.bytes()).ok_or_else(|| {
            size_overflow(format!("{} - {} would be negative; sizes are zero or more", o, self.0.bytes()))
        })?;
        Self::wrap(py, diff)
    }

    fn __mul__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !other.is_instance_of::<PyInt>() || other.is_instance_of::<PyBool>() {
            return Ok(py.NotImplemented());
        }
        let factor: u64 = other.extract().map_err(|_| {
            size_overflow(format!(
                "cannot multiply a size by {other}: the factor must be a whole number from 0 to 2**64-1"
            ))
        })?;
        let product = self.0.bytes().checked_mul(factor).ok_or_else(|| {
            size_overflow(format!("{} * {} exceeds the largest size (16 EiB)", self.0.bytes(), factor))
        })?;
        Self::wrap(py, product)
    }

    fn __rmul__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__mul__(py, other)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        Ok((py.get_type::<Self>().into_any(), PyTuple::new(py, [self.0.bytes()])?))
    }
}
