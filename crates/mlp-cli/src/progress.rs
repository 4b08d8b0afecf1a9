//! What `mlp train` shows while it works: a progress bar on a terminal, one plain line per
//! epoch otherwise (CI logs, pipes), nothing but the result with --quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlp_train::EpochRecord;

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    epochs: usize,
}

impl Progress {
    pub fn new(quiet: bool, epochs: usize) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} batches, loss {msg} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Self { bar, quiet, epochs }
    }

    /// After each mini-batch.
    pub fn batch(&self, epoch: usize, done: usize, total: usize, running_loss: f64) {
        if let Some(bar) = &self.bar {
            // The first batch seen in an epoch (not always batch 1: a resumed run starts
            // mid-epoch) sets the bar up.
            let new_epoch = bar.length() != Some(total as u64) || done == 1;
            if new_epoch {
                bar.set_length(total as u64);
                bar.reset_eta();
                bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
            }
            bar.set_position(done as u64);
            // The bar redraws a few times a second; formatting the loss at every batch would
            // allocate in the training loop for nothing. (At an epoch's first batch too, so
            // that the last epoch's loss is not shown as this one's.)
            if new_epoch || done.is_multiple_of(32) || done == total {
                bar.set_message(format!("{running_loss:.4}"));
            }
        }
    }

    /// After each epoch.
    pub fn epoch(&self, r: &EpochRecord) {
        if self.quiet {
            return;
        }
        let width = self.epochs.to_string().len();
        let val = match (r.val_loss, r.val_acc) {
            (Some(loss), Some(acc)) => format!("val_loss {loss:.4}  val_acc {acc:.4}"),
            _ => "no validation".to_owned(),
        };
        let line = format!(
            "epoch {:>width$}/{}  train_loss {:.4}  {val}  lr {:.5}  {:.2}s",
            r.epoch, self.epochs, r.train_loss, r.lr, r.epoch_seconds
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
