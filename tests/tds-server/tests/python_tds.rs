//! python-tds (`pip install python-tds`), a pure-Python TDS client, against the test server:
//! a third client nobody here wrote reads the fixture back value for value. The test fails
//! (never skips) when python3 or the `pytds` module is missing.

mod common;

use std::process::Command;

use tds_test_server::TlsMode;

fn read_fixture(port: u16) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_fixture.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .args([common::USER, common::PASSWORD, common::DATABASE])
        .output()
        .expect("python3 runs (python-tds: pip install python-tds)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "read_fixture.py failed (python-tds installed? pip install python-tds): {stderr}"
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per row"))
        .collect()
}

#[test]
fn every_type_reads_back_value_for_value() {
    let server = common::start(TlsMode::Off);
    let rows = read_fixture(server.port());
    assert_eq!(rows.len(), 2);
    // Python's datetime and time hold microseconds: python-tds cuts the 7th digit.
    let expected = [
        ("c_bigint_min", "-9223372036854775808"),
        ("c_bigint_max", "9223372036854775807"),
        ("c_int", "-2147483648"),
        ("c_smallint", "-32768"),
        ("c_tinyint", "255"),
        ("c_bit", "True"),
        ("c_decimal", "-9999999999999999999999999999.9999999999"),
        ("c_numeric", "12345678901234.5678"),
        ("c_money", "-922337203685477.5808"),
        ("c_smallmoney", "214748.3647"),
        ("c_float", "-1.2345678901234568e-300"),
        ("c_real", "3.4028234663852886e+38"),
        ("c_date_min", "0001-01-01"),
        ("c_date_max", "9999-12-31"),
        ("c_time", "23:59:59.999999"),
        ("c_datetime", "2024-02-29 23:59:59.997000"),
        ("c_smalldatetime", "2079-06-06 23:59:00"),
        ("c_datetime2", "9999-12-31 23:59:59.999999"),
        ("c_dto_plus", "2024-01-01 01:30:00.123456+05:30"),
        ("c_dto_minus", "2000-06-15 12:00:00-08:00"),
        ("c_char", "Ñ€é       "),
        ("c_varchar", "Ñ€é abc"),
        ("c_nchar", "ü€😀 "),
        ("c_nvarchar", "ü€😀"),
        ("c_varchar_max", "pattern:3145728"),
        ("c_nvarchar_max", "pattern:1048576"),
        ("c_varbinary_max", "pattern:3145735"),
        ("c_text", "Ñ€é text"),
        ("c_ntext", "ü€😀 ntext"),
        ("c_image", "hex:000102ff"),
        ("c_binary", "hex:01020300"),
        ("c_varbinary", "hex:dead"),
        ("c_guid", "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
        ("c_xml", "<a b=\"ü\">€</a>"),
        ("c_variant_int", "42"),
        ("c_variant_float", "1.5"),
        ("c_variant_datetime", "2024-01-02 03:04:05.007000"),
        ("c_rowversion", "hex:00000000000007d1"),
    ];
    assert_eq!(rows[0].len(), expected.len());
    for (name, value) in expected {
        assert_eq!(rows[0][name], serde_json::json!(value), "{name}");
    }
    assert!(
        rows[1].values().all(serde_json::Value::is_null),
        "row 2 is all NULL"
    );
}
