use super::*;

const BODY: &str = "\
a
#if SUBGROUP
b
#if VEC4
c
#else
d
#endif
#else
e
#endif
#include \"t/frag\"
#if !VEC4
i
#endif
f
";

fn fragments(name: &str) -> Option<&'static str> {
    match name {
        "t/frag" => Some("g\n#include \"t/inner\"\n"),
        "t/inner" => Some("h\n#include \"t/frag\"\n"),
        _ => None,
    }
}

fn run(source: &'static str, flags: &[Flag]) -> Result<String> {
    let shader = Shader::external("t/body", source);
    compose(&shader, Flags::of(flags), &fragments)
}

#[test]
fn branches_nest_and_fragments_land_once() {
    assert_eq!(run(BODY, &[]).unwrap(), "a\ne\ng\nh\ni\nf\n");
    assert_eq!(
        run(BODY, &[Flag::Subgroup]).unwrap(),
        "a\nb\nd\ng\nh\ni\nf\n"
    );
    assert_eq!(
        run(BODY, &[Flag::Vec4, Flag::Subgroup]).unwrap(),
        "a\nb\nc\ng\nh\nf\n"
    );
}

#[test]
fn flags_are_a_set() {
    let a = Flags::of(&[Flag::Vec4, Flag::Subgroup, Flag::Vec4]);
    assert_eq!(a, Flags::of(&[Flag::Subgroup, Flag::Vec4]));
    assert_eq!(a.to_string(), "SUBGROUP+VEC4");
    assert_eq!(Flags::NONE.to_string(), "");
    for f in Flag::ALL {
        assert_eq!(Flag::from_name(f.name()), Some(f));
    }
}

#[test]
fn bad_directives_are_errors() {
    let cases: &[(&'static str, &str)] = &[
        ("#if F17\nx\n#endif\n", "unknown flag"),
        ("#if VEC4\nx\n", "without #endif"),
        ("x\n#endif\n", "#endif without"),
        ("#else\n", "#else without"),
        ("#if VEC4\n#else\n#else\n#endif\n", "#else without"),
        ("#include \"t/none\"\n", "unknown fragment"),
        ("#include t/frag\n", "quoted name"),
        ("#define X 1\n", "unknown directive"),
        ("#endif VEC4\n", "#endif VEC4"),
    ];
    for (source, want) in cases {
        let err = run(source, &[Flag::Vec4]).unwrap_err().to_string();
        assert!(err.contains(want), "{source:?}: {err}");
        assert!(err.contains("shaders/t/body.wgsl"), "{err}");
    }
}

#[test]
fn a_flag_the_body_never_tests_is_an_error() {
    let err = run("#if VEC4\nx\n#endif\n", &[Flag::Subgroup]).unwrap_err();
    assert!(err.to_string().contains("never tests SUBGROUP"), "{err}");
}

#[test]
fn a_drifted_declaration_is_reported() {
    let declared = KernelInterface {
        params: 32,
        bindings: &[("x", Access::Read), ("y", Access::ReadWrite)],
    };
    let shader = |names: &[(&str, Access)]| -> Vec<(String, Access)> {
        names.iter().map(|(n, a)| (n.to_string(), *a)).collect()
    };
    let good = shader(&[("x", Access::Read), ("y", Access::ReadWrite)]);
    assert!(declared.differences(Some(32), &good).is_empty());
    assert_eq!(declared.differences(Some(48), &good).len(), 1);
    assert_eq!(declared.differences(None, &good).len(), 1);
    let swapped = shader(&[("y", Access::ReadWrite), ("x", Access::Read)]);
    assert_eq!(declared.differences(Some(32), &swapped).len(), 2);
    let access = shader(&[("x", Access::ReadWrite), ("y", Access::ReadWrite)]);
    assert_eq!(declared.differences(Some(32), &access).len(), 1);
    let extra = shader(&[
        ("x", Access::Read),
        ("y", Access::ReadWrite),
        ("z", Access::Read),
    ]);
    assert_eq!(declared.differences(Some(32), &extra).len(), 1);
    assert_eq!(declared.differences(Some(32), &good[..1]).len(), 1);
}

#[test]
fn a_dispatch_must_match_the_declaration() {
    let declared = KernelInterface {
        params: 16,
        bindings: &[("src", Access::Read), ("dst", Access::ReadWrite)],
    };
    assert!(declared.check_dispatch("k", 16, 2).is_ok());
    let err = declared.check_dispatch("k", 32, 2).unwrap_err().to_string();
    assert!(err.contains("32-byte") && err.contains("k:"), "{err}");
    let err = declared.check_dispatch("k", 16, 1).unwrap_err().to_string();
    assert!(err.contains("src, dst"), "{err}");
    assert_eq!(declared.describe_binding(1), "`dst` (binding 2)");
}

#[test]
fn any_of_tests_every_flag_it_names() {
    const ANY: &str = "#if F16 || BF16\nh\n#else\nf\n#endif\n";
    assert_eq!(run(ANY, &[]).unwrap(), "f\n");
    assert_eq!(run(ANY, &[Flag::F16]).unwrap(), "h\n");
    assert_eq!(run(ANY, &[Flag::Bf16]).unwrap(), "h\n");
    assert!(run("#if F16 || F17\n#endif\n", &[])
        .unwrap_err()
        .to_string()
        .contains("unknown flag"));
}

#[test]
fn native_f16_puts_enable_on_the_first_line() {
    const BODY: &str = "#if NATIVE_F16\nn\n#endif\n#if F16\nx\n#endif\n";
    assert_eq!(
        run(BODY, &[Flag::F16, Flag::NativeF16]).unwrap(),
        "enable f16;\nn\nx\n"
    );
    assert_eq!(run(BODY, &[Flag::F16]).unwrap(), "x\n");
}

#[test]
fn second_role_flags_are_independent_and_native_enables_f16() {
    const BODY: &str = "#if BF16\na\n#endif\n#if F16_B\n#if NATIVE_F16_B\nn\n#endif\nb\n#endif\n";
    assert_eq!(
        run(BODY, &[Flag::F16B, Flag::NativeF16B]).unwrap(),
        "enable f16;\nn\nb\n"
    );
    assert_eq!(run(BODY, &[Flag::Bf16, Flag::F16B]).unwrap(), "a\nb\n");
    assert_eq!(run(BODY, &[Flag::Bf16]).unwrap(), "a\n");
    for f in [Flag::F16B, Flag::Bf16B, Flag::NativeF16B] {
        assert_eq!(Flag::from_name(f.name()), Some(f));
    }
}
