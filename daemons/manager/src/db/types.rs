//! Column types: enums stored by wire name ([`Wire`]), typed JSON ([`JsonOf`], [`Slots`]),
//! and the enumerations that only the database knows (user roles, vfolder modes, …).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;

use bai_core::ResourceSlot;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, StringLen, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, TryGetableFromJson, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::DbError;

/// An enumeration stored in a text column by its wire name (`PENDING`, `single-node`, …).
///
/// Any type with `FromStr` and `Display` fits: the bai-core statuses, session types and
/// cluster modes, and the enums of this module. A row whose text does not parse is a
/// decoding error naming the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Wire<T>(pub T);

impl<T> Wire<T> {
    /// The value inside.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Wire<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Wire<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for Wire<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: fmt::Display> fmt::Display for Wire<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: fmt::Display> From<Wire<T>> for Value {
    fn from(value: Wire<T>) -> Self {
        Value::String(Some(Box::new(value.0.to_string())))
    }
}

impl<T> ValueType for Wire<T>
where
    T: FromStr,
{
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::String(Some(s)) => s.parse().map(Wire).map_err(|_| ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        format!("Wire<{}>", std::any::type_name::<T>())
    }

    fn array_type() -> ArrayType {
        ArrayType::String
    }

    fn column_type() -> ColumnType {
        ColumnType::String(StringLen::N(64))
    }
}

impl<T> Nullable for Wire<T> {
    fn null() -> Value {
        Value::String(None)
    }
}

impl<T> TryGetable for Wire<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        let text = String::try_get_by(res, index)?;
        text.parse().map(Wire).map_err(|e| TryGetError::DbErr(DbErr::Type(format!("column {index:?}: {e}"))))
    }
}

/// A JSON column holding a serde type: resource slots, lists of names, option objects.
///
/// Reading a row whose JSON does not fit `T` is a decoding error.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonOf<T>(pub T);

/// Resource slots as a JSON column (`{"cpu": "2", "mem": "4294967296"}`).
pub type Slots = JsonOf<ResourceSlot>;

/// A list of strings as a JSON column (the original's `ARRAY(String)` columns).
pub type StringList = JsonOf<Vec<String>>;

impl<T> JsonOf<T> {
    /// The value inside.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for JsonOf<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for JsonOf<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for JsonOf<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Serialize> From<JsonOf<T>> for Value {
    fn from(value: JsonOf<T>) -> Self {
        // Serialising plain data (maps, strings, decimals) cannot fail.
        let json = serde_json::to_value(&value.0).unwrap_or(serde_json::Value::Null);
        Value::Json(Some(Box::new(json)))
    }
}

impl<T: DeserializeOwned> ValueType for JsonOf<T> {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::Json(Some(json)) => serde_json::from_value(*json).map(JsonOf).map_err(|_| ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        format!("JsonOf<{}>", std::any::type_name::<T>())
    }

    fn array_type() -> ArrayType {
        ArrayType::Json
    }

    fn column_type() -> ColumnType {
        ColumnType::JsonBinary
    }
}

impl<T> Nullable for JsonOf<T> {
    fn null() -> Value {
        Value::Json(None)
    }
}

impl<T: DeserializeOwned> TryGetableFromJson for JsonOf<T> {}

/// Declares an enumeration with wire names, parsed case-insensitively (`_` read as `-`
/// unless the wire names are upper case).
macro_rules! db_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $normalize:expr,
     { $($(#[$vdoc:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DbError;
            fn from_str(s: &str) -> Result<Self, DbError> {
                let normalize: fn(&str) -> String = $normalize;
                match normalize(s.trim()).as_str() {
                    $($text $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(DbError::invalid(
                        $kind,
                        format!("{s:?} is not one of {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fn lower_dash(s: &str) -> String {
    s.to_ascii_lowercase().replace('_', "-")
}

fn upper(s: &str) -> String {
    s.to_ascii_uppercase()
}

db_enum!(
    /// What a user may do: `superadmin` (everything), `admin` (their domain), `user`,
    /// `monitor` (read-only observer).
    UserRole, "user role", lower_dash, {
        /// Manages everything.
        Superadmin = "superadmin",
        /// Manages one domain.
        Admin = "admin",
        /// A regular user (the default).
        #[default]
        User = "user",
        /// Reads statistics, changes nothing.
        Monitor = "monitor",
    }
);

impl UserRole {
    /// Whether keypairs of this role get the admin flag: `admin` and `superadmin`.
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Admin | Self::Superadmin)
    }
}

db_enum!(
    /// Whether a user account may log in.
    UserStatus, "user status", lower_dash, {
        /// May log in (the default).
        #[default]
        Active = "active",
        /// Disabled by an administrator.
        Inactive = "inactive",
        /// Deleted (kept for history).
        Deleted = "deleted",
        /// Signed up, e-mail not yet verified.
        BeforeVerification = "before-verification",
    }
);

db_enum!(
    /// How a (batch) session ended.
    SessionResult, "session result", lower_dash, {
        /// Not finished, or not a batch session (the default).
        #[default]
        Undefined = "undefined",
        /// The startup command exited with 0.
        Success = "success",
        /// The startup command failed.
        Failure = "failure",
    }
);

db_enum!(
    /// What a resource policy means for slots it does not list.
    DefaultForUnspecified, "default_for_unspecified", upper, {
        /// Unlisted slots are zero.
        Limited = "LIMITED",
        /// Unlisted slots are unlimited (the default).
        #[default]
        Unlimited = "UNLIMITED",
    }
);

db_enum!(
    /// What a virtual folder holds.
    VFolderUsageMode, "vfolder usage mode", lower_dash, {
        /// Anything (the default).
        #[default]
        General = "general",
        /// A model for inference sessions.
        Model = "model",
        /// A data set.
        Data = "data",
    }
);

db_enum!(
    /// Who owns a virtual folder.
    VFolderOwnershipType, "vfolder ownership type", lower_dash, {
        /// A user.
        #[default]
        User = "user",
        /// A group (project).
        Group = "group" | "project",
    }
);

db_enum!(
    /// The operation state of a virtual folder.
    VFolderStatus, "vfolder status", lower_dash, {
        /// Usable (the default).
        #[default]
        Ready = "ready",
        /// An operation is running on it.
        Performing = "performing",
        /// Being cloned.
        Cloning = "cloning",
        /// Mounted by a session.
        Mounted = "mounted",
        /// Something failed.
        Error = "error",
        /// In the trash bin.
        DeletePending = "delete-pending",
        /// Being deleted.
        DeleteOngoing = "delete-ongoing",
        /// Deleted on the storage.
        DeleteComplete = "delete-complete",
        /// Deletion failed.
        DeleteError = "delete-error",
    }
);

db_enum!(
    /// Where an invitation to a shared virtual folder stands.
    VFolderInvitationState, "invitation state", lower_dash, {
        /// Sent, not yet answered (the default).
        #[default]
        Pending = "pending",
        /// Accepted by the invitee, who now has a permission on the folder.
        Accepted = "accepted",
        /// Rejected by the invitee.
        Rejected = "rejected",
        /// Withdrawn by the inviter.
        Canceled = "canceled" | "cancelled",
    }
);

db_enum!(
    /// What an image is for.
    ImageType, "image type", lower_dash, {
        /// Runs compute sessions (the default).
        #[default]
        Compute = "compute",
        /// Runs system sessions.
        System = "system",
        /// Runs services.
        Service = "service",
    }
);

db_enum!(
    /// The kind of a group (project).
    GroupType, "group type", lower_dash, {
        /// A regular project (the default).
        #[default]
        General = "general",
        /// Holds shared models.
        ModelStore = "model-store",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_leniently_and_name_the_choices() {
        assert_eq!("SUPERADMIN".parse::<UserRole>().unwrap(), UserRole::Superadmin);
        assert_eq!("before_verification".parse::<UserStatus>().unwrap(), UserStatus::BeforeVerification);
        assert_eq!("unlimited".parse::<DefaultForUnspecified>().unwrap(), DefaultForUnspecified::Unlimited);
        assert_eq!("project".parse::<VFolderOwnershipType>().unwrap(), VFolderOwnershipType::Group);
        let err = "root".parse::<UserRole>().unwrap_err().to_string();
        assert_eq!(err, "invalid user role: \"root\" is not one of superadmin, admin, user, monitor");
    }

    #[test]
    fn wrappers_convert_to_values() {
        let v: Value = Wire(bai_core::SessionStatus::Pending).into();
        assert_eq!(v, Value::String(Some(Box::new("PENDING".into()))));
        let back = <Wire<bai_core::SessionStatus> as ValueType>::try_from(v).unwrap();
        assert_eq!(back.0, bai_core::SessionStatus::Pending);
        let slots: Slots = JsonOf(serde_json::from_str(r#"{"cpu":"2"}"#).unwrap());
        let v: Value = slots.clone().into();
        assert_eq!(<Slots as ValueType>::try_from(v).unwrap(), slots);
    }
}
