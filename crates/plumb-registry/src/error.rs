//! Registry errors and their OCI wire form.
//!
//! Every refusal the distribution API can give is one [`RegistryError`]
//! variant; [`RegistryError::status`] and [`RegistryError::code`] give the HTTP
//! status and the OCI error code of the JSON body
//! (`{"errors":[{"code","message","detail"}]}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plumb_oci::Digest;

/// A refused or failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Blob not in this repository.
    #[error("blob {0} is unknown to this repository")]
    BlobUnknown(Digest),
    /// No upload session with this id.
    #[error("blob upload {0:?} is unknown or has expired")]
    UploadUnknown(String),
    /// Upload bytes do not hash to the named digest, or the digest is malformed.
    #[error("{0}")]
    DigestInvalid(String),
    /// A manifest names blobs this repository does not hold.
    #[error("manifest references {0}, which this repository does not hold: push it first")]
    ManifestBlobUnknown(Digest),
    /// Malformed manifest.
    #[error("{0}")]
    ManifestInvalid(String),
    /// No such manifest or tag.
    #[error("manifest {0:?} is unknown to this repository")]
    ManifestUnknown(String),
    /// Invalid repository name.
    #[error("{0}")]
    NameInvalid(String),
    /// Repository has no content.
    #[error("repository {0:?} is unknown")]
    NameUnknown(String),
    /// Invalid tag.
    #[error("{0}")]
    TagInvalid(String),
    /// Body too large.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Chunk out of order.
    #[error(
        "chunk starts at byte {got}, but the upload holds {expected} bytes: send chunks in order"
    )]
    RangeInvalid {
        /// Where the chunk claimed to start.
        got: u64,
        /// Bytes received so far.
        expected: u64,
    },
    /// A blob range outside the blob (the blob's size).
    #[error("requested range is outside the blob of {0} bytes")]
    RangeUnsatisfiable(u64),
    /// Size mismatch.
    #[error("{0}")]
    SizeInvalid(String),
    /// A tag policy refused the write.
    #[error("{message}")]
    PolicyDenied {
        /// Human message naming the policy.
        message: String,
        /// The policy's name.
        policy: String,
    },
    /// Credentials missing or wrong.
    #[error("authentication required")]
    Unauthorized,
    /// Credentials missing, wrong or insufficient, with the Bearer challenge
    /// (`WWW-Authenticate`) telling the client which token to fetch.
    #[error("authentication required")]
    Challenge(String),
    /// A write refused by a rule of the registry (a read-only pull-through
    /// cache, a storage quota); `policy` names the rule.
    #[error("{message}")]
    Refused {
        /// Human message naming the rule.
        message: String,
        /// The rule's name (`proxy`, `quota`).
        policy: &'static str,
    },
    /// An upstream of a pull-through cache failed and nothing was cached.
    #[error("upstream {upstream}: {message}")]
    Upstream {
        /// The upstream.
        upstream: String,
        /// What went wrong (never credentials).
        message: String,
    },
    /// Authenticated but not allowed.
    #[error("user {0:?} may not push: it has the read role")]
    Denied(String),
    /// Not supported.
    #[error("{0}")]
    Unsupported(String),
    /// Not part of the API.
    #[error("no such endpoint")]
    NotFound,
    /// Disk trouble.
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
    /// Metadata store trouble.
    #[error("metadata store failure: {0}")]
    Store(String),
}

macro_rules! store_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self { RegistryError::Store(e.to_string()) }
        }
    )*};
}
store_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    serde_json::Error
);

impl RegistryError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        use RegistryError::*;
        match self {
            BlobUnknown(_) | UploadUnknown(_) | ManifestUnknown(_) | NameUnknown(_) | NotFound => {
                StatusCode::NOT_FOUND
            }
            DigestInvalid(_)
            | ManifestBlobUnknown(_)
            | ManifestInvalid(_)
            | NameInvalid(_)
            | TagInvalid(_)
            | SizeInvalid(_) => StatusCode::BAD_REQUEST,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RangeInvalid { .. } | RangeUnsatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            PolicyDenied { .. } => StatusCode::CONFLICT,
            Unauthorized | Challenge(_) => StatusCode::UNAUTHORIZED,
            Denied(_) | Refused { .. } => StatusCode::FORBIDDEN,
            Upstream { .. } => StatusCode::BAD_GATEWAY,
            Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            Io(_) | Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OCI error code.
    pub fn code(&self) -> &'static str {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => "BLOB_UNKNOWN",
            UploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid(_) => "DIGEST_INVALID",
            ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid(_) => "MANIFEST_INVALID",
            ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            NameInvalid(_) => "NAME_INVALID",
            NameUnknown(_) => "NAME_UNKNOWN",
            TagInvalid(_) => "TAG_INVALID",
            TooLarge { .. } | SizeInvalid(_) => "SIZE_INVALID",
            RangeInvalid { .. } => "BLOB_UPLOAD_INVALID",
            RangeUnsatisfiable(_) => "SIZE_INVALID",
            PolicyDenied { .. } => "DENIED",
            Unauthorized | Challenge(_) => "UNAUTHORIZED",
            Denied(_) | Refused { .. } => "DENIED",
            Upstream { .. } => "UNKNOWN",
            Unsupported(_) | NotFound => "UNSUPPORTED",
            Io(_) | Store(_) => "UNKNOWN",
        }
    }

    fn detail(&self) -> serde_json::Value {
        match self {
            RegistryError::PolicyDenied { policy, .. } => serde_json::json!({ "policy": policy }),
            RegistryError::Refused { policy, .. } => serde_json::json!({ "policy": policy }),
            RegistryError::BlobUnknown(d) | RegistryError::ManifestBlobUnknown(d) => {
                serde_json::json!({ "digest": d })
            }
            _ => serde_json::Value::Null,
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "registry request failed");
        }
        // Server-side failures are not described to clients beyond their class.
        let message = if status.is_server_error() {
            "internal storage failure; see the registry's log".to_owned()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({
            "errors": [{ "code": self.code(), "message": message, "detail": self.detail() }]
        });
        let mut resp = (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response();
        if let RegistryError::RangeUnsatisfiable(size) = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert("content-range", v);
        }
        if let RegistryError::Challenge(c) = &self
            && let Ok(v) = axum::http::HeaderValue::from_str(c)
        {
            resp.headers_mut().insert("www-authenticate", v);
        } else if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Basic realm=\"plumb-registry\""),
            );
        }
        resp
    }
}
