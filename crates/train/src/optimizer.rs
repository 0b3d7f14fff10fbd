//! The head's optimizers, both with PyTorch's semantics.
//!
//! SGD with weight decay and momentum (no dampening), the method's:
//!
//! ```text
//! g = ∇w + weight_decay · w
//! b = g                      (first step)      b = momentum · b + g   (after)
//! w = w − lr · b             (b = g when momentum is 0)
//! ```
//!
//! Adam (Kingma and Ba 2015), weight decay as an L2 term as in `torch.optim.Adam`:
//!
//! ```text
//! g = ∇w + weight_decay · w
//! m = β1 m + (1 − β1) g      v = β2 v + (1 − β2) g²      (m = v = 0 before step 1)
//! w = w − lr · (m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + ε)
//! ```
//!
//! candle-nn's `SGD` has neither term and its `AdamW` decouples the decay.
//! State is keyed by variable name, never by position (`VarMap` iterates in
//! hash order): SGD's buffers under the name itself, Adam's moments under
//! `m/<name>` and `v/<name>` and its step count under `t`.

use crate::config::{OptimizerConfig, OptimizerKind};
use candle_core::{Result, Tensor, Var};
use std::collections::{BTreeMap, HashMap};

const ADAM_STEP_KEY: &str = "t";

/// The optimizer's own terms and state; the learning rate is the
/// schedule's, given to every `step`.
pub struct Optimizer {
    config: OptimizerConfig,
    /// SGD's buffers or Adam's moments, by the keys above.
    state: BTreeMap<String, Tensor>,
    /// Adam's updates so far (its bias correction's t), a plain number so
    /// that a step reads nothing back from the device.
    adam_steps: u64,
}

impl Optimizer {
    pub fn new(config: &OptimizerConfig) -> Optimizer {
        Optimizer { config: *config, state: BTreeMap::new(), adam_steps: 0 }
    }

    /// One update of every variable that has a gradient, at `lr`.
    pub fn step(&mut self, vars: &HashMap<String, Var>, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        if self.config.kind == OptimizerKind::Adam {
            self.adam_steps += 1;
        }
        let t = self.adam_steps as f64;
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let Some(grad) = grads.get(name) else { continue };
            let var = &vars[name];
            // Detached throughout: state that kept its autograd graph would
            // keep every earlier step's tensors alive.
            let weights = var.as_tensor().detach();
            let mut g = grad.detach();
            if self.config.weight_decay != 0.0 {
                g = (g + (&weights * self.config.weight_decay)?)?;
            }
            let delta = match self.config.kind {
                OptimizerKind::Sgd => self.sgd_direction(name, g)?,
                OptimizerKind::Adam => self.adam_direction(name, g, t)?,
            };
            var.set(&(weights - (delta * lr)?)?)?;
        }
        Ok(())
    }

    fn sgd_direction(&mut self, name: &str, g: Tensor) -> Result<Tensor> {
        let momentum = self.config.momentum;
        if momentum == 0.0 {
            return Ok(g);
        }
        let b = match self.state.get(name) {
            Some(buffer) => ((buffer * momentum)? + g)?,
            None => g,
        };
        self.state.insert(name.to_string(), b.clone());
        Ok(b)
    }

    fn adam_direction(&mut self, name: &str, g: Tensor, t: f64) -> Result<Tensor> {
        let [beta1, beta2] = self.config.betas;
        let (m_key, v_key) = (format!("m/{name}"), format!("v/{name}"));
        let m = match self.state.get(&m_key) {
            Some(m) => ((m * beta1)? + (&g * (1.0 - beta1))?)?,
            None => (&g * (1.0 - beta1))?,
        };
        let g2 = g.sqr()?;
        let v = match self.state.get(&v_key) {
            Some(v) => ((v * beta2)? + (g2 * (1.0 - beta2))?)?,
            None => (g2 * (1.0 - beta2))?,
        };
        let m_hat = (&m / (1.0 - beta1.powf(t)))?;
        let v_hat = (&v / (1.0 - beta2.powf(t)))?;
        let direction = (m_hat / (v_hat.sqrt()? + self.config.eps)?)?;
        self.state.insert(m_key, m);
        self.state.insert(v_key, v);
        Ok(direction)
    }

    /// The optimizer's state, by name (for checkpoints): Adam's step count
    /// under `t`, so that a resumed run corrects its moments' bias as an
    /// uninterrupted one does.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut state = self.state.clone();
        if self.adam_steps > 0 {
            let t = Tensor::new(&[self.adam_steps as f64], &candle_core::Device::Cpu)?;
            state.insert(ADAM_STEP_KEY.to_string(), t);
        }
        Ok(state)
    }

    /// The state a checkpoint saved (`state`).
    pub fn load_state(&mut self, mut state: BTreeMap<String, Tensor>) -> Result<()> {
        self.adam_steps = match state.remove(ADAM_STEP_KEY) {
            Some(t) => {
                t.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?.first().map_or(0, |&t| t as u64)
            }
            None => 0,
        };
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn one_weight(w: f64, grad: f64) -> (Var, HashMap<String, Var>, HashMap<String, Tensor>) {
        let var = Var::new(&[w], &Device::Cpu).unwrap();
        let vars: HashMap<String, Var> = [("w".to_string(), var.clone())].into();
        let grads: HashMap<String, Tensor> = [("w".to_string(), Tensor::new(&[grad], &Device::Cpu).unwrap())].into();
        (var, vars, grads)
    }

    fn value(var: &Var) -> f64 {
        var.as_tensor().to_vec1::<f64>().unwrap()[0]
    }

    #[test]
    fn two_steps_match_the_hand_computed_updates() {
        // w = 1, ∇ = 0.5, wd = 0.1, momentum = 0.9, lr = 0.1:
        // step 1: g = 0.5 + 0.1·1 = 0.6, b = 0.6, w = 1 − 0.06 = 0.94
        // step 2: g = 0.5 + 0.094 = 0.594, b = 0.54 + 0.594 = 1.134, w = 0.94 − 0.1134 = 0.8266
        let (var, vars, grads) = one_weight(1.0, 0.5);
        let config = OptimizerConfig { lr: 0.1, weight_decay: 0.1, momentum: 0.9, ..Default::default() };
        let mut sgd = Optimizer::new(&config);
        sgd.step(&vars, &grads, 0.1).unwrap();
        assert!((value(&var) - 0.94).abs() < 1e-12, "{}", value(&var));
        sgd.step(&vars, &grads, 0.1).unwrap();
        assert!((value(&var) - 0.8266).abs() < 1e-12, "{}", value(&var));
        let b: Vec<f64> = sgd.state().unwrap()["w"].to_vec1().unwrap();
        assert!((b[0] - 1.134).abs() < 1e-12);
    }

    #[test]
    fn plain_sgd_keeps_no_state() {
        let (var, vars, grads) = one_weight(2.0, 1.0);
        let mut sgd = Optimizer::new(&OptimizerConfig { lr: 0.5, weight_decay: 0.0, ..Default::default() });
        sgd.step(&vars, &grads, 0.5).unwrap();
        assert_eq!(value(&var), 1.5);
        assert!(sgd.state().unwrap().is_empty());
    }

    #[test]
    fn adam_matches_the_hand_computed_updates_and_resumes_exactly() {
        // w = 1, wd = 0, β = (0.9, 0.999), ε = 1e-8, lr = 0.01.
        // Step 1, ∇ = 0.5: m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25;
        //   w = 1 − 0.01 · 0.5 / (0.5 + 1e-8) = 0.99 (to 2e-10).
        // Step 2, ∇ = −0.25: m = 0.045 − 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225;
        //   m̂ = 0.02 / 0.19 = 0.105263…, v̂ = 0.00031225 / 0.001999 = 0.156203…;
        //   w = 0.99 − 0.01 · 0.105263 / 0.395225 = 0.987337…
        let config = OptimizerConfig { kind: OptimizerKind::Adam, weight_decay: 0.0, ..Default::default() };
        let (var, vars, grads) = one_weight(1.0, 0.5);
        let mut adam = Optimizer::new(&config);
        adam.step(&vars, &grads, 0.01).unwrap();
        assert!((value(&var) - 0.99).abs() < 1e-9, "{}", value(&var));
        let negative: HashMap<String, Tensor> =
            [("w".to_string(), Tensor::new(&[-0.25f64], &Device::Cpu).unwrap())].into();
        let saved = adam.state().unwrap();
        adam.step(&vars, &negative, 0.01).unwrap();
        let m_hat = 0.02 / (1.0 - 0.81);
        let v_hat = 0.00031225 / (1.0 - 0.999f64.powi(2));
        let w1 = 1.0 - 0.01 * 0.5 / (0.5 + 1e-8);
        let expected = w1 - 0.01 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((value(&var) - expected).abs() < 1e-12, "{} vs {expected}", value(&var));
        assert!((expected - 0.987337).abs() < 1e-6);

        // The state saved after step 1, loaded into a fresh optimizer, makes
        // the same second step (the step count travels with the moments).
        let (again, vars_again, _) = one_weight(w1, 0.0);
        let mut resumed = Optimizer::new(&config);
        resumed.load_state(saved).unwrap();
        resumed.step(&vars_again, &negative, 0.01).unwrap();
        assert!((value(&again) - value(&var)).abs() < 1e-12);
    }
}
