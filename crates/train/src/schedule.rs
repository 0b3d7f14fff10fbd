//! The learning-rate schedule: a pure function of the step.

use crate::config::ScheduleConfig;

/// The learning rate for the step that follows `completed` steps:
/// `base * factor^k`, k = whole periods elapsed (in steps when
/// `every_steps` is set, else in epochs of `steps_per_epoch`).
pub fn learning_rate(base: f64, schedule: &ScheduleConfig, completed: u64, steps_per_epoch: u64) -> f64 {
    let periods = match schedule.every_steps {
        Some(every) => completed / every,
        None => (completed / steps_per_epoch.max(1)) / schedule.every_epochs,
    };
    base * schedule.factor.powi(periods.min(i32::MAX as u64) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_every_300_epochs() {
        let s = ScheduleConfig { factor: 0.5, every_epochs: 300, every_steps: None };
        let per_epoch = 10;
        assert_eq!(learning_rate(0.08, &s, 0, per_epoch), 0.08);
        assert_eq!(learning_rate(0.08, &s, 299 * 10 + 9, per_epoch), 0.08, "last step of epoch 299");
        assert_eq!(learning_rate(0.08, &s, 300 * 10, per_epoch), 0.04, "first step of epoch 300");
        assert_eq!(learning_rate(0.08, &s, 900 * 10, per_epoch), 0.01);
    }

    #[test]
    fn by_steps_for_short_runs() {
        let s = ScheduleConfig { factor: 0.1, every_epochs: 300, every_steps: Some(50) };
        assert_eq!(learning_rate(1.0, &s, 49, 7), 1.0);
        assert!((learning_rate(1.0, &s, 50, 7) - 0.1).abs() < 1e-15);
        assert!((learning_rate(1.0, &s, 120, 7) - 0.01).abs() < 1e-15);
    }
}
