//! planted.rs — colour a planted MLP, compress it, check the base.
//!
//! The Rust twin of bindings/examples/planted.c (same generator, same
//! network, same output): `cargo run --example planted`.

use fibration::{Activation, ColorOptions, Graph};

struct SplitMix64(u64);

impl SplitMix64 {
    /// The next double in [-1, 1).
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn fill(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

const N_IN: usize = 4;
const B1: usize = 3;
const B2: usize = 2;
const N_OUT: usize = 2;
const H1: usize = 6;
const H2: usize = 6;
const BATCH: usize = 3;

fn main() -> Result<(), fibration::Error> {
    let mut rng = SplitMix64(42);
    let (wb1, bb1) = (rng.fill(B1 * N_IN), rng.fill(B1));
    let (wb2, bb2) = (rng.fill(B2 * B1), rng.fill(B2));
    let (wb3, bb3) = (rng.fill(N_OUT * B2), rng.fill(N_OUT));

    // the lift: unit i of a hidden layer copies base unit i % width
    let mut w1 = vec![0.0; H1 * N_IN];
    let mut b1 = vec![0.0; H1];
    for i in 0..H1 {
        for k in 0..N_IN {
            w1[i * N_IN + k] = wb1[(i % B1) * N_IN + k];
        }
        b1[i] = bb1[i % B1];
    }
    let mut w2 = vec![0.0; H2 * H1];
    let mut b2 = vec![0.0; H2];
    for i in 0..H2 {
        for k in 0..H1 {
            w2[i * H1 + k] = wb2[(i % B2) * B1 + k % B1] / (H1 / B1) as f64;
        }
        b2[i] = bb2[i % B2];
    }
    let mut w3 = vec![0.0; N_OUT * H2];
    for i in 0..N_OUT {
        for k in 0..H2 {
            w3[i * H2 + k] = wb3[i * B2 + k % B2] / (H2 / B2) as f64;
        }
    }

    let mut g = Graph::new()?;
    let x = g.add_input(N_IN as i64)?;
    let h1 = g.add_dense(x, H1 as i64, &w1, Some(&b1))?;
    g.set_activation(h1, Activation::Relu)?;
    let h2 = g.add_dense(h1, H2 as i64, &w2, Some(&b2))?;
    g.set_activation(h2, Activation::Tanh)?;
    g.add_dense(h2, N_OUT as i64, &w3, Some(&bb3))?;

    let fibers = g.color(&ColorOptions::default())?;
    let n_groups = g.num_groups()?;
    println!("groups: {}", n_groups);
    let mut line = String::from("fibers per group:");
    for grp in 0..n_groups {
        line += &format!(" {}", fibers.num_classes(grp)?);
    }
    println!("{}", line);
    let classes: Vec<String> = fibers.colors(h1, H1 as i64)?.iter().map(|c| c.to_string()).collect();
    println!("classes of h1: {}", classes.join(" "));
    let balanced = g.is_balanced(&fibers, 0.0)?;
    println!("balanced: {}", balanced as i32);

    let base = g.compress(&fibers)?;
    println!("parameters: {} => {}", g.num_parameters()?, base.graph().num_parameters()?);

    let inputs = rng.fill(BATCH * N_IN);
    let out = g.forward(BATCH as i64, &inputs)?;
    let out_base = base.graph().forward(BATCH as i64, &inputs)?;
    let mut max_diff = 0.0f64;
    for r in 0..BATCH {
        let mut line = format!("output {}:", r);
        for j in 0..N_OUT {
            line += &format!(" {:.6}", out_base[r * N_OUT + j]);
            max_diff = max_diff.max((out[r * N_OUT + j] - out_base[r * N_OUT + j]).abs());
        }
        println!("{}", line);
    }
    println!("base equals original: {}", if max_diff <= 1e-12 { "yes" } else { "no" });
    if max_diff > 1e-12 || !balanced {
        std::process::exit(1);
    }
    Ok(())
}
