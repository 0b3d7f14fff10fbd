//! SGD with weight decay and momentum (PyTorch's semantics, no dampening):
//!
//! ```text
//! g = ∇w + weight_decay · w
//! b = g                      (first step)      b = momentum · b + g   (after)
//! w = w − lr · b             (b = g when momentum is 0)
//! ```
//!
//! candle-nn's `SGD` has neither term. State (the momentum buffers) is keyed
//! by variable name, never by position: `VarMap` iterates in hash order.

use crate::config::SgdConfig;
use candle_core::{Result, Tensor, Var};
use std::collections::{BTreeMap, HashMap};

/// The optimizer's own terms; the learning rate is the schedule's, given
/// to every `step`.
pub struct Sgd {
    momentum: f64,
    weight_decay: f64,
    buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    pub fn new(config: &SgdConfig) -> Sgd {
        Sgd { momentum: config.momentum, weight_decay: config.weight_decay, buffers: BTreeMap::new() }
    }

    /// One update of every variable that has a gradient, at `lr`.
    pub fn step(&mut self, vars: &HashMap<String, Var>, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let Some(grad) = grads.get(name) else { continue };
            let var = &vars[name];
            // Detached throughout: a momentum buffer that kept its autograd
            // graph would keep every earlier step's tensors alive.
            let weights = var.as_tensor().detach();
            let mut g = grad.detach();
            if self.weight_decay != 0.0 {
                g = (g + (&weights * self.weight_decay)?)?;
            }
            if self.momentum != 0.0 {
                g = match self.buffers.get(name) {
                    Some(buffer) => ((buffer * self.momentum)? + g)?,
                    None => g,
                };
                self.buffers.insert(name.clone(), g.clone());
            }
            var.set(&(weights - (g * lr)?)?)?;
        }
        Ok(())
    }

    /// The momentum buffers, by variable name (for checkpoints).
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.buffers
    }

    pub fn load_state(&mut self, state: BTreeMap<String, Tensor>) {
        self.buffers = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_steps_match_the_hand_computed_updates() {
        // w = 1, ∇ = 0.5, wd = 0.1, momentum = 0.9, lr = 0.1:
        // step 1: g = 0.5 + 0.1·1 = 0.6, b = 0.6, w = 1 − 0.06 = 0.94
        // step 2: g = 0.5 + 0.094 = 0.594, b = 0.54 + 0.594 = 1.134, w = 0.94 − 0.1134 = 0.8266
        let var = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let vars: HashMap<String, Var> = [("w".to_string(), var.clone())].into();
        let grads: HashMap<String, Tensor> = [("w".to_string(), Tensor::new(&[0.5f64], &Device::Cpu).unwrap())].into();
        let mut sgd = Sgd::new(&SgdConfig { lr: 0.1, weight_decay: 0.1, momentum: 0.9 });
        sgd.step(&vars, &grads, 0.1).unwrap();
        let w: Vec<f64> = var.as_tensor().to_vec1().unwrap();
        assert!((w[0] - 0.94).abs() < 1e-12, "{w:?}");
        sgd.step(&vars, &grads, 0.1).unwrap();
        let w: Vec<f64> = var.as_tensor().to_vec1().unwrap();
        assert!((w[0] - 0.8266).abs() < 1e-12, "{w:?}");
        let b: Vec<f64> = sgd.state()["w"].to_vec1().unwrap();
        assert!((b[0] - 1.134).abs() < 1e-12);
    }

    #[test]
    fn plain_sgd_keeps_no_state() {
        let var = Var::new(&[2.0f64], &Device::Cpu).unwrap();
        let vars: HashMap<String, Var> = [("w".to_string(), var.clone())].into();
        let grads: HashMap<String, Tensor> = [("w".to_string(), Tensor::new(&[1.0f64], &Device::Cpu).unwrap())].into();
        let mut sgd = Sgd::new(&SgdConfig { lr: 0.5, weight_decay: 0.0, momentum: 0.0 });
        sgd.step(&vars, &grads, 0.5).unwrap();
        assert_eq!(var.as_tensor().to_vec1::<f64>().unwrap(), [1.5]);
        assert!(sgd.state().is_empty());
    }
}
