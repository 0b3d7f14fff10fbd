use crate::ModelError;
use candle_core::Device;

/// `cpu` or `cuda:N` (`cuda` alone is `cuda:0`).
pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match spec.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| ModelError::BadDevice(spec.into()))?,
                None => return Err(ModelError::BadDevice(spec.into())),
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(ModelError::NoCuda(spec.into()));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_refuses_nonsense() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(matches!(parse_device("gpu"), Err(ModelError::BadDevice(_))));
        assert!(matches!(parse_device("cuda:x"), Err(ModelError::BadDevice(_))));
        if !candle_core::utils::cuda_is_available() {
            assert!(matches!(parse_device("cuda:0"), Err(ModelError::NoCuda(_))));
        }
    }
}
