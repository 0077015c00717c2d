//! The states the wire carries as words (`"recording"`, `"backoff"`): one
//! enum each, so the binaries name them and never spell them.

use serde::{Deserialize, Serialize};

/// A state carried on the wire as a lowercase word: an enum here, the
/// word in JSON, comparable with the word (`state == "recording"`).
macro_rules! wire_state {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// The word on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, word: &&str) -> bool {
                self.as_str() == *word
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, word: &str) -> bool {
                self.as_str() == word
            }
        }
    };
}

wire_state! {
    /// Where a camera comes from: the node's config file or its camera API.
    Origin {
        Config => "config",
        Api => "api",
    }
}

wire_state! {
    /// A camera's source as its node supervises it.
    RunState {
        /// The source is being opened; no frame yet in this run.
        Starting => "starting",
        Running => "running",
        /// Listening for a publisher (`rtmp-listen://`).
        Waiting => "waiting",
        /// The watchdog saw no frame for too long; the run is being ended.
        Stalled => "stalled",
        /// Waiting before the next run.
        Backoff => "backoff",
        /// Turned off on purpose.
        Stopped => "stopped",
        /// The converter could not be started at all (retried with backoff).
        Failed => "failed",
    }
}

wire_state! {
    /// A push of a camera to an RTSP server.
    PushStatus {
        Connecting => "connecting",
        Recording => "recording",
        Backoff => "backoff",
    }
}

wire_state! {
    /// A viewer's recording.
    RecordingStatus {
        Recording => "recording",
        Idle => "idle",
    }
}

wire_state! {
    /// A viewer's relay announcement: passing cameras on, or gone.
    RelayStatus {
        Active => "active",
        /// Sent on a clean exit and as its last will.
        Left => "left",
    }
}
