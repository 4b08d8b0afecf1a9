//! The instruction sets the kernels run on, chosen once per run and passed down.
//!
//! Every kernel in [`kernels`](crate::kernels) is written once, generic over
//! [`fearless_simd::Simd`], and compiled for each [`SimdLevel`]. A caller picks a level (the
//! best the CPU has, [`SimdLevel::best`], or the one a user asked for, [`SimdLevel::choose`]),
//! turns it into a token with [`SimdLevel::token`] and enters the level once, at the top of a
//! pass, with `fearless_simd::dispatch!(token, simd => pass(simd, …))`: the kernels the pass
//! calls are `#[inline(always)]` and so compiled for that level.
//!
//! Two limits: the same bits hold for finite values (a run that diverges to NaN may carry
//! other NaN payloads on another level), and a build for a newer baseline
//! (`-C target-cpu=native`, x86-64-v3) compiles the lower levels with the newer
//! instructions, so there `MLP_SIMD=sse2` runs AVX2 code (with the same bits).
//!
//! **Every level gives the same bits.** The kernels' sums of products are fused
//! multiply-adds, rounded once, on every level: in hardware with AVX2, AVX-512 and NEON, and
//! exactly emulated by fearless_simd's `mul_add_precise` at the SSE2 and scalar levels (which
//! makes those levels slow: they are there to run anywhere and to check the others, see
//! docs/ARCHITECTURE.md, "Arithmetic"). Every sum runs in an order fixed by the data, never by
//! the register width.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use fearless_simd::{Level, Simd};

/// An instruction set the kernels can be compiled for, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimdLevel {
    /// x86-64 AVX-512 as Ice Lake has it (F, BW, CD, DQ, VL and the VBMI, VNNI, BITALG,
    /// VPOPCNTDQ, IFMA, GFNI and VAES extensions): Ice Lake, Zen 4 and later. Skylake-SP and
    /// Cascade Lake lack some of these and run the AVX2 level.
    Avx512,
    /// x86-64-v3: AVX2 and FMA (Haswell, Zen 1 and later).
    Avx2,
    /// The x86-64 baseline, SSE2: every x86-64 CPU.
    Sse2,
    /// aarch64 NEON: every 64-bit ARM CPU.
    Neon,
    /// Plain scalar code, on any CPU.
    Scalar,
}

/// A [`SimdLevel`] that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdLevelError {
    /// Not a level's name.
    #[error("unknown SIMD level {name:?} (expected one of avx512, avx2, sse2, neon, scalar)")]
    Unknown {
        /// What was given.
        name: String,
    },
    /// A level this CPU cannot run.
    #[error("this CPU has no {level} (it can run {})", SimdLevel::list(&SimdLevel::supported()))]
    Unsupported {
        /// The level asked for.
        level: SimdLevel,
    },
}

impl SimdLevel {
    /// Every level, fastest first.
    pub const ALL: [SimdLevel; 5] = [
        SimdLevel::Avx512,
        SimdLevel::Avx2,
        SimdLevel::Sse2,
        SimdLevel::Neon,
        SimdLevel::Scalar,
    ];

    /// The level's name, as `MLP_SIMD` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Sse2 => "sse2",
            SimdLevel::Neon => "neon",
            SimdLevel::Scalar => "scalar",
        }
    }

    /// The token that compiles code for this level, if this CPU can run it.
    pub fn token(self) -> Option<Level> {
        let cpu = Level::new();
        match self {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            SimdLevel::Avx512 => cpu.as_avx512().map(Level::Avx512),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            SimdLevel::Avx2 => cpu.as_avx2().map(Level::Avx2),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            SimdLevel::Sse2 => cpu.as_sse2().map(Level::Sse2),
            #[cfg(target_arch = "aarch64")]
            SimdLevel::Neon => cpu.as_neon().map(Level::Neon),
            SimdLevel::Scalar => Some(Level::fallback()),
            #[allow(unreachable_patterns)] // on each architecture, the other's levels
            _ => None,
        }
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        self.token().is_some()
    }

    /// The levels this CPU can run, fastest first.
    pub fn supported() -> Vec<SimdLevel> {
        Self::ALL.into_iter().filter(|l| l.is_supported()).collect()
    }

    /// The fastest level this CPU can run.
    pub fn best() -> SimdLevel {
        Self::ALL
            .into_iter()
            .find(|l| l.is_supported())
            .unwrap_or(SimdLevel::Scalar)
    }

    /// The level a user asked for (`MLP_SIMD`'s value, say), checked against this CPU; the
    /// best one when `requested` is `None` or empty.
    pub fn choose(requested: Option<&str>) -> Result<SimdLevel, SimdLevelError> {
        match requested.map(str::trim) {
            None | Some("") => Ok(Self::best()),
            Some(name) => {
                let level: SimdLevel = name.parse()?;
                if level.is_supported() {
                    Ok(level)
                } else {
                    Err(SimdLevelError::Unsupported { level })
                }
            }
        }
    }

    /// `a, b, c`: levels' names for messages.
    fn list(levels: &[SimdLevel]) -> String {
        let names: Vec<&str> = levels.iter().map(|l| l.name()).collect();
        names.join(", ")
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimdLevel {
    type Err = SimdLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .ok_or(SimdLevelError::Unknown { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_scalar_runs_everywhere() {
        for level in SimdLevel::ALL {
            assert_eq!(level.name().parse::<SimdLevel>(), Ok(level));
        }
        assert_eq!("AVX2".parse::<SimdLevel>(), Ok(SimdLevel::Avx2));
        assert!(SimdLevel::Scalar.is_supported());
        #[cfg(target_arch = "x86_64")]
        assert!(SimdLevel::Sse2.is_supported() && !SimdLevel::Neon.is_supported());
        assert_eq!(SimdLevel::choose(None), Ok(SimdLevel::best()));
        assert_eq!(SimdLevel::choose(Some(" ")), Ok(SimdLevel::best()));
        assert_eq!(SimdLevel::choose(Some("scalar")), Ok(SimdLevel::Scalar));
    }

    #[test]
    fn a_level_the_cpu_lacks_is_refused_naming_the_ones_it_has() {
        let missing = SimdLevel::ALL.into_iter().find(|l| !l.is_supported());
        let missing = missing.expect("no CPU has both NEON and SSE2");
        let message = SimdLevel::choose(Some(missing.name()))
            .unwrap_err()
            .to_string();
        assert!(message.contains(missing.name()), "{message}");
        assert!(message.contains("scalar"), "{message}");
        let unknown = SimdLevel::choose(Some("mmx")).unwrap_err().to_string();
        assert!(unknown.contains("\"mmx\""), "{unknown}");
    }
}
