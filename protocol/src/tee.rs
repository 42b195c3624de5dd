//! The TEE types a guest names at `/auth`: one closed set shared by the server (which
//! verifier reads the evidence, the claims key of the verified evidence) and the client
//! (which evidence to collect).
//!
//! The names are those of kbs-types, the crate Trustee and guest-components put on the wire.
//! Its 0.14 release renamed the Azure types (`azsnpvtpm` → `az-snp-vtpm`) with no alias, so
//! guests of different releases spell them differently: both spellings are read, the
//! hyphenated one is written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! tees {
    ($($variant:ident => $name:literal $(| $alias:literal)*, $doc:literal;)*) => {
        /// A TEE type as named in the `tee` member of a `/auth` request.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Tee {
            $(#[doc = $doc] $variant,)*
        }

        impl Tee {
            /// Every TEE type, in declaration order.
            pub const ALL: &'static [Tee] = &[$(Tee::$variant),*];

            /// The wire name, e.g. `tdx` (also the key of its claims in verified evidence).
            pub fn name(self) -> &'static str {
                match self { $(Tee::$variant => $name),* }
            }

            /// Parses a wire name, accepting the pre-0.14 spellings too.
            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name $(| $alias)* => Some(Tee::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

tees! {
    Sample => "sample", "Trustee's development TEE: evidence is a JSON claim set, nothing is verified.";
    SampleDevice => "sampledevice", "Trustee's development device evidence.";
    Tdx => "tdx", "Intel TDX (a DCAP quote, optionally with a CC event log).";
    Sgx => "sgx", "Intel SGX (a DCAP quote).";
    Snp => "snp", "AMD SEV-SNP.";
    Sev => "sev", "AMD SEV (pre-SNP).";
    AzSnpVtpm => "az-snp-vtpm" | "azsnpvtpm", "SEV-SNP on Azure, reported through a vTPM.";
    AzTdxVtpm => "az-tdx-vtpm" | "aztdxvtpm", "TDX on Azure, reported through a vTPM.";
    Cca => "cca", "Arm CCA.";
    Csv => "csv", "Hygon CSV.";
    Se => "se", "IBM Secure Execution.";
    Nvidia => "nvidia", "An NVIDIA GPU's own evidence.";
    HygonDcu => "hygondcu", "A Hygon DCU accelerator.";
    Tpm => "tpm", "A TPM quote.";
    HygonTpm => "hygontpm", "Hygon's TPM (Alibaba's Trustee).";
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `tee` name that no release of kbs-types defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TEE type {0:?} (known: {list})", list = Tee::known_list())]
pub struct UnknownTee(pub String);

impl Tee {
    /// The wire names, comma-separated, for error messages and `--help`.
    pub fn known_list() -> String {
        Tee::ALL
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for Tee {
    type Err = UnknownTee;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tee::from_name(s).ok_or_else(|| UnknownTee(s.to_string()))
    }
}

impl Serialize for Tee {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Tee {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_old_azure_spellings_are_read() {
        for &t in Tee::ALL {
            assert_eq!(t.name().parse::<Tee>(), Ok(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Tee>(&json).unwrap(), t);
        }
        assert_eq!("azsnpvtpm".parse::<Tee>(), Ok(Tee::AzSnpVtpm));
        assert_eq!("aztdxvtpm".parse::<Tee>(), Ok(Tee::AzTdxVtpm));
        assert_eq!(Tee::AzTdxVtpm.to_string(), "az-tdx-vtpm");
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let e = "TDX".parse::<Tee>().unwrap_err();
        assert_eq!(e, UnknownTee("TDX".into()));
        assert!(e.to_string().contains("sample, sampledevice, tdx"));
        assert!(serde_json::from_str::<Tee>("\"quantum\"").is_err());
    }
}
