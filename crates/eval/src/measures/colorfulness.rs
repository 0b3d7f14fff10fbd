//! Colourfulness (D. Hasler, S. Süsstrunk, "Measuring colourfulness in
//! natural images", 2003): with rg = R − G and yb = (R + G) / 2 − B over the
//! pixels, M = √(σ_rg² + σ_yb²) + 0.3 √(μ_rg² + μ_yb²). Population
//! deviations, 0..255 values.

use image::RgbImage;

pub fn colorfulness(image: &RgbImage) -> f64 {
    let n = (image.width() as f64) * (image.height() as f64);
    let (mut s_rg, mut s_yb, mut q_rg, mut q_yb) = (0.0, 0.0, 0.0, 0.0);
    for p in image.pixels() {
        let [r, g, b] = p.0.map(f64::from);
        let rg = r - g;
        let yb = 0.5 * (r + g) - b;
        s_rg += rg;
        s_yb += yb;
        q_rg += rg * rg;
        q_yb += yb * yb;
    }
    let (m_rg, m_yb) = (s_rg / n, s_yb / n);
    let var_rg = (q_rg / n - m_rg * m_rg).max(0.0);
    let var_yb = (q_yb / n - m_yb * m_yb).max(0.0);
    (var_rg + var_yb).sqrt() + 0.3 * (m_rg * m_rg + m_yb * m_yb).sqrt()
}
