//! Learning-rate schedules: exponential decay per epoch (the seed's recipe), and cosine decay
//! to a floor after a linear warm-up, per step. Each is a small value whose `at` gives the
//! rate of a step; nothing in them changes as training runs, so a checkpoint needs only the
//! configuration and the step's place.

use serde::{Deserialize, Serialize};

/// How the learning rate changes, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// lr · decay^epoch, fixed within an epoch.
    #[default]
    Exponential,
    /// Linear warm-up, then cosine decay to the floor, changing every step.
    Cosine,
}

impl ScheduleKind {
    /// Every kind, as spelt on command lines.
    pub const ALL: [ScheduleKind; 2] = [Self::Exponential, Self::Cosine];

    /// The name a command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exponential => "exponential",
            Self::Cosine => "cosine",
        }
    }
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown schedule {s:?} (expected exponential or cosine)"))
    }
}

/// A run's schedule, resolved from its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// See [`ExponentialDecay`].
    Exponential(ExponentialDecay),
    /// See [`Cosine`].
    Cosine(Cosine),
}

impl Schedule {
    /// The learning rate of step `step` (0-based) of epoch `epoch` (0-based), epochs being
    /// `steps_per_epoch` steps long.
    pub fn at(&self, epoch: usize, step: usize, steps_per_epoch: usize) -> f32 {
        match self {
            Self::Exponential(s) => s.at(epoch),
            Self::Cosine(s) => s.at(epoch * steps_per_epoch + step),
        }
    }

    /// Whether the rate changes within an epoch.
    pub fn is_per_step(&self) -> bool {
        matches!(self, Self::Cosine(_))
    }
}

/// Linear warm-up from peak/warmup to `peak` over the first `warmup` steps, then half a
/// cosine from `peak` down to `floor` at step `total`:
/// lr(s) = floor + (peak − floor)·(1 + cos(π·(s − warmup)/(total − warmup)))/2.
/// Computed in f64 with `libm`'s cosine, the same bits on every machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cosine {
    /// Rate at the end of the warm-up.
    pub peak: f32,
    /// Rate the decay ends at.
    pub floor: f32,
    /// Steps of warm-up.
    pub warmup: usize,
    /// Steps of the whole run.
    pub total: usize,
}

impl Cosine {
    /// The rate of global step `s` (0-based).
    pub fn at(&self, s: usize) -> f32 {
        let (peak, floor) = (f64::from(self.peak), f64::from(self.floor));
        if s < self.warmup {
            return (peak * (s + 1) as f64 / self.warmup as f64) as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((s - self.warmup) as f64 / span).min(1.0);
        (floor + (peak - floor) * 0.5 * (1.0 + libm::cos(std::f64::consts::PI * progress))) as f32
    }
}

/// The learning rate schedule lr_epoch = lr_0 · decay^epoch (epochs counted from 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialDecay {
    /// Learning rate of epoch 0.
    pub initial: f32,
    /// Factor per epoch.
    pub decay: f32,
}

impl ExponentialDecay {
    /// The learning rate for `epoch` (0-based).
    pub fn at(&self, epoch: usize) -> f32 {
        // decay^epoch in f64 keeps 50 epochs of decay free of accumulated rounding.
        (self.initial as f64 * power(self.decay as f64, epoch)) as f32
    }
}

/// `x^n` by binary exponentiation, written out: `f64::powi` promises no particular rounding,
/// and the learning rate of every step comes from here. (This is the loop LLVM's `powi`
/// calls on x86-64 and aarch64, `__powidf2`, so the bits are those of every model trained
/// with `powi`.)
pub(crate) fn power(mut x: f64, mut n: usize) -> f64 {
    let mut result = 1.0;
    loop {
        if n & 1 == 1 {
            result *= x;
        }
        n >>= 1;
        if n == 0 {
            return result;
        }
        x *= x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_is_binary_exponentiation_with_the_bits_of_powi() {
        for x in [0.95f64, 0.5, 0.999, 1.0, 0.0] {
            for n in [0usize, 1, 2, 3, 7, 49, 50, 1000] {
                assert_eq!(power(x, n).to_bits(), x.powi(n as i32).to_bits(), "{x}^{n}");
            }
        }
    }

    #[test]
    fn schedule_decays_geometrically() {
        let s = ExponentialDecay {
            initial: 0.2,
            decay: 0.5,
        };
        assert_eq!((s.at(0), s.at(1), s.at(3)), (0.2, 0.1, 0.025));
    }

    #[test]
    fn cosine_warms_up_linearly_then_decays_to_the_floor() {
        let s = Cosine {
            peak: 0.1,
            floor: 0.001,
            warmup: 10,
            total: 110,
        };
        assert_eq!(s.at(0), 0.01);
        assert_eq!(s.at(4), 0.05);
        assert_eq!(s.at(9), 0.1);
        assert_eq!(s.at(10), 0.1);
        // Half way through the decay: the mean of peak and floor.
        assert!((s.at(60) - 0.0505).abs() < 1e-7, "{}", s.at(60));
        // The last step is one step short of the floor (as PyTorch's CosineAnnealingLR).
        assert!(s.at(109) > 0.001 && s.at(109) < 0.00103, "{}", s.at(109));
        assert_eq!(s.at(500), 0.001);
        let per_step = Schedule::Cosine(s);
        assert!(per_step.is_per_step());
        assert_eq!(per_step.at(1, 2, 5), s.at(7));
    }
}
