//! Every preset and baseline: the analytic breakdown (what the reproductions print) equals the
//! parameters of the module actually built, line by line and in total.

use dfdx::prelude::*;
use video_adapters::count::check_against_module;
use video_adapters::init::Init;
use video_adapters::registry::presets;

#[test]
fn every_preset_breakdown_equals_its_built_module() {
    let dev = Cpu::default();
    for (name, cfg) in presets() {
        let model = cfg.build(&dev, &mut Init::zeros()).unwrap();
        let params = model.params();
        if let Err(e) = check_against_module(&cfg.breakdown(), &params) {
            panic!("{name}: {e:#?}");
        }
        let total: usize = params.iter().map(|p| p.numel).sum();
        assert_eq!(total as u64, cfg.breakdown().params(), "{name}");
    }
}
