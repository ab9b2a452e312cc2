//! General directed graphs through the safe API: E. coli from the shipped
//! edge list and from slices, small circuits with known fibers.

use fibration::{edgelist, ColorOptions, Convention, Graph, Symmetry};
use std::collections::HashMap;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../docs/examples/graphs").join(name)
}

fn colors(g: &Graph, symmetry: Symmetry) -> Vec<i64> {
    let n = g.group_info(0).unwrap().n_units;
    g.color(&ColorOptions::new(symmetry)).unwrap().colors(0, n).unwrap()
}

fn classes(colors: &[i64]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (node, &k) in colors.iter().enumerate() {
        if out.len() <= k as usize {
            out.resize(k as usize + 1, Vec::new());
        }
        out[k as usize].push(node);
    }
    out
}

/// test_Ecoli.csv as slices: node ids by first appearance of the gene names
/// (as the library's reader numbers them), type ids by first appearance.
fn ecoli_slices() -> (Vec<String>, Vec<i64>, Vec<i64>, Vec<i32>) {
    let text = std::fs::read_to_string(data("test_Ecoli.csv")).unwrap();
    let (mut names, mut ids) = (Vec::new(), HashMap::new());
    let mut types = HashMap::new();
    let (mut src, mut dst, mut ty) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let mut id = |name: &str| -> i64 {
            *ids.entry(name.to_string()).or_insert_with(|| {
                names.push(name.to_string());
                names.len() as i64 - 1
            })
        };
        src.push(id(f[0]));
        dst.push(id(f[1]));
        let next = types.len() as i32;
        ty.push(*types.entry(f[2].to_string()).or_insert(next));
    }
    (names, src, dst, ty)
}

#[test]
fn ecoli_from_the_shipped_file_has_414_pure_and_555_published_classes() {
    let mut g = Graph::read_edgelist(data("test_Ecoli.csv"), edgelist::AUTO).unwrap();
    let names = g.node_names(0).unwrap().unwrap();
    assert_eq!(names.len(), 879);
    let mut types = g.edge_type_names(0).unwrap().unwrap();
    types.sort();
    assert_eq!(types, ["dual", "negative", "positive"]);
    let pure = colors(&g, Symmetry::Fibers);
    assert_eq!(classes(&pure).len(), 414);
    g.set_convention(Convention::Published).unwrap();
    assert_eq!(classes(&colors(&g, Symmetry::Fibers)).len(), 555);
}

#[test]
fn ecoli_quotient_gives_every_member_its_in_degree() {
    let (_, src, dst, ty) = ecoli_slices();
    let g = Graph::from_edges(&src, &dst, None, Some(&ty), None).unwrap();
    let fibers = g.color(&ColorOptions::default()).unwrap();
    let colors = fibers.colors(0, 879).unwrap();
    let base = g.quotient(&fibers).unwrap();
    let mut class_in = vec![0i64; 414];
    for a in &base {
        assert!(a.source_class < 414 && a.target_class < 414 && a.multiplicity >= 1);
        assert_eq!(a.weight, a.multiplicity as f64);
        class_in[a.target_class as usize] += a.multiplicity;
    }
    let mut in_degree = vec![0i64; 879];
    for &v in &dst {
        in_degree[v as usize] += 1;
    }
    for node in 0..879 {
        assert_eq!(in_degree[node], class_in[colors[node] as usize], "node {}", node);
    }
}

#[test]
fn ecoli_from_slices_matches_the_file_node_for_node() {
    let (names, src, dst, ty) = ecoli_slices();
    let from_slices = Graph::from_edges(&src, &dst, None, Some(&ty), None).unwrap();
    let from_file = Graph::read_edgelist(data("test_Ecoli.csv"), edgelist::HEADER).unwrap();
    assert_eq!(from_file.node_names(0).unwrap().unwrap(), names);
    assert_eq!(from_slices.node_names(0).unwrap(), None);
    assert_eq!(colors(&from_slices, Symmetry::Fibers), colors(&from_file, Symmetry::Fibers));
}

#[test]
fn the_three_copies_of_ecoli_agree_by_name() {
    let by_name = |file: &str, flags: u32| -> HashMap<String, i64> {
        let g = Graph::read_edgelist(data(file), flags).unwrap();
        let names = g.node_names(0).unwrap().unwrap();
        names.into_iter().zip(colors(&g, Symmetry::Fibers)).collect()
    };
    let csv = by_name("test_Ecoli.csv", edgelist::AUTO);
    let txt = by_name("ecoli_named.txt", edgelist::NO_HEADER);
    // same partition: classes are numbered by lowest node, which differs
    let mut pairs: HashMap<i64, i64> = HashMap::new();
    for (name, k) in &csv {
        assert_eq!(*pairs.entry(*k).or_insert(txt[name]), txt[name], "{}", name);
    }
    assert_eq!(pairs.len(), 414);
}

#[test]
fn small_circuits_have_the_fibers_the_definition_implies() {
    let star = Graph::from_edges(&[0, 0, 0], &[1, 2, 3], None, None, None).unwrap();
    assert_eq!(classes(&colors(&star, Symmetry::Fibers)), vec![vec![0], vec![1, 2, 3]]);
    let cycle = Graph::from_edges(&[0, 1, 2], &[1, 2, 0], None, None, None).unwrap();
    assert_eq!(classes(&colors(&cycle, Symmetry::Fibers)), vec![vec![0, 1, 2]]);
    let typed = Graph::from_edges(&[0, 0], &[1, 2], None, Some(&[0, 1]), None).unwrap();
    assert_eq!(classes(&colors(&typed, Symmetry::Fibers)).len(), 3);
    // weights are summed per class: 1 gets 2.0 from {0, 3}, 2 gets 1.0 + 1.0
    let weighted =
        Graph::from_edges(&[0, 0, 3], &[1, 2, 2], Some(&[2.0, 1.0, 1.0]), None, None).unwrap();
    assert_eq!(classes(&colors(&weighted, Symmetry::Fibers)), vec![vec![0, 3], vec![1, 2]]);
    let isolated = Graph::from_edges(&[0], &[1], None, None, Some(4)).unwrap();
    assert_eq!(classes(&colors(&isolated, Symmetry::Fibers)), vec![vec![0, 2, 3], vec![1]]);
}

#[test]
fn shipped_circuits_give_the_data_readme_counts() {
    for (file, pure, published) in [("test_1.csv", 6, 6), ("test_3SCC.csv", 5, 6), ("test_SELF.csv", 1, 2)] {
        let mut g = Graph::read_edgelist(data(file), edgelist::AUTO).unwrap();
        assert_eq!(classes(&colors(&g, Symmetry::Fibers)).len(), pure, "{}", file);
        g.set_convention(Convention::Published).unwrap();
        assert_eq!(classes(&colors(&g, Symmetry::Fibers)).len(), published, "{}", file);
    }
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let e = Graph::from_edges(&[0, 1], &[1], None, None, None).unwrap_err();
    assert!(e.message.contains("2 sources, 1 targets"), "{}", e);
    let e = Graph::from_edges(&[0, 5], &[1, 1], None, None, Some(3)).unwrap_err();
    assert_eq!(e.code, fibration_sys::FIB_E_RANGE);
    let e = Graph::from_edges(&[0], &[1], Some(&[f64::NAN]), None, None).unwrap_err();
    assert_eq!(e.code, fibration_sys::FIB_E_NONFINITE);
    let e = Graph::read_edgelist(data("missing.csv"), edgelist::AUTO).unwrap_err();
    assert_eq!(e.code, fibration_sys::FIB_E_IO);
    assert!(e.message.contains("missing.csv"), "{}", e);
    assert!(Graph::from_edges(&[], &[], None, None, None).is_err());
}
