use super::inline::split_args;
use super::*;
use proptest::prelude::*;

fn limits() -> RespLimits {
    RespLimits::default()
}

fn bulk_array(words: &[&str]) -> Value {
    Value::Array(words.iter().map(|w| Value::bulk(w.as_bytes())).collect())
}

fn parse_all(buf: &[u8]) -> (Value, usize) {
    parse(buf, &limits()).expect("valid").expect("complete")
}

#[test]
fn parses_an_array_of_bulk_strings_as_clients_send_it() {
    let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
    assert_eq!(
        parse_all(buf),
        (bulk_array(&["SET", "k", "hello"]), buf.len())
    );
}

#[test]
fn consumes_exactly_one_value_of_a_pipeline() {
    let buf = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
    assert_eq!(parse_all(buf), (bulk_array(&["PING"]), 14));
}

#[test]
fn bulk_strings_are_binary_safe() {
    let buf = b"$4\r\n\r\n\0\xff\r\n";
    assert_eq!(
        parse_all(buf),
        (Value::bulk(b"\r\n\0\xff".to_vec()), buf.len())
    );
}

#[test]
fn decodes_every_reply_type() {
    let cases: Vec<(&[u8], Value)> = vec![
        (b"+OK\r\n", Value::ok()),
        (b"-ERR no leader\r\n", Value::Error("ERR no leader".into())),
        (b":-42\r\n", Value::Integer(-42)),
        (b"$0\r\n\r\n", Value::bulk(Vec::new())),
        (b"$-1\r\n", Value::NullBulk),
        (b"*0\r\n", Value::Array(vec![])),
        (b"*-1\r\n", Value::NullArray),
        (
            b"*2\r\n:1\r\n*1\r\n$-1\r\n",
            Value::Array(vec![Value::Integer(1), Value::Array(vec![Value::NullBulk])]),
        ),
    ];
    for (buf, expected) in cases {
        let parsed = parse_reply(buf, &limits()).unwrap();
        assert_eq!(
            parsed,
            Some((expected, buf.len())),
            "{}",
            buf.escape_ascii()
        );
    }
}

#[test]
fn every_strict_prefix_is_incomplete_and_never_an_error() {
    let mut stream = Vec::new();
    bulk_array(&["SET", "key", "va\r\nlue"]).encode(&mut stream);
    Value::Array(vec![
        Value::Integer(7),
        Value::NullBulk,
        Value::error("ERR x"),
    ])
    .encode(&mut stream);
    let first_len = parse_all(&stream).1;
    for split in 0..first_len {
        assert_eq!(
            parse(&stream[..split], &limits()),
            Ok(None),
            "split at {split}"
        );
    }
    for split in first_len..=stream.len() {
        assert_eq!(
            parse(&stream[..split], &limits()).unwrap().unwrap().1,
            first_len
        );
    }
}

#[test]
fn inline_commands_split_like_redis() {
    let buf = b"set \"my key\" 'it\\'s'  \"a\\x41\\n\"\r\n";
    assert_eq!(
        parse_all(buf),
        (bulk_array(&["set", "my key", "it's", "aA\n"]), buf.len())
    );
}

#[test]
fn inline_commands_accept_a_bare_newline() {
    assert_eq!(parse_all(b"PING\nPING\n"), (bulk_array(&["PING"]), 5));
}

#[test]
fn an_empty_inline_line_is_an_empty_command() {
    assert_eq!(parse_all(b"\r\n"), (Value::Array(vec![]), 2));
    assert_eq!(parse_all(b"   \n"), (Value::Array(vec![]), 4));
}

#[test]
fn quotes_in_the_middle_of_a_word_join_it() {
    assert_eq!(
        split_args(b"a\"b c\"d"),
        None,
        "closing quote must be followed by a blank"
    );
    assert_eq!(
        split_args(b"a\"b c\" d"),
        Some(vec![b"ab c".to_vec(), b"d".to_vec()])
    );
}

#[test]
fn unbalanced_quotes_are_rejected_with_redis_text() {
    let err = parse(b"GET \"key\r\n", &limits()).unwrap_err();
    assert_eq!(err, RespError::UnbalancedQuotes);
    assert_eq!(
        err.to_string(),
        "Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        parse(b"GET 'k\n", &limits()),
        Err(RespError::UnbalancedQuotes)
    );
}

#[test]
fn an_inline_line_without_newline_beyond_the_limit_is_too_big() {
    let small = RespLimits {
        inline_bytes_max: 8,
        ..limits()
    };
    assert_eq!(parse(b"GET abcd", &small), Ok(None));
    assert_eq!(
        parse(b"GET abcdefgh", &small),
        Err(RespError::TooBigInlineRequest)
    );
}

#[test]
fn bad_lengths_are_rejected_with_redis_text() {
    let small = RespLimits {
        bulk_bytes_max: 4,
        array_len_max: 2,
        ..limits()
    };
    let cases: Vec<(&[u8], RespError)> = vec![
        (b"$5\r\n", RespError::InvalidBulkLength),
        (b"$-2\r\n", RespError::InvalidBulkLength),
        (b"$x\r\n", RespError::InvalidBulkLength),
        (b"$01\r\n", RespError::InvalidBulkLength),
        (b"*3\r\n", RespError::InvalidMultibulkLength),
        (b"*-2\r\n", RespError::InvalidMultibulkLength),
        (b"*\r\n", RespError::InvalidMultibulkLength),
        (b":1.5\r\n", RespError::InvalidInteger),
    ];
    for (buf, expected) in cases {
        assert_eq!(parse(buf, &small), Err(expected), "{}", buf.escape_ascii());
    }
    assert_eq!(
        RespError::InvalidBulkLength.to_string(),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        RespError::InvalidMultibulkLength.to_reply(),
        Value::Error("ERR Protocol error: invalid multibulk length".into())
    );
}

#[test]
fn framing_must_use_crlf() {
    assert_eq!(parse(b"*1\n", &limits()), Err(RespError::ExpectedCrlf));
    assert_eq!(parse(b"*1\rx", &limits()), Err(RespError::ExpectedCrlf));
    assert_eq!(
        parse(b"$1\r\nab\r\n", &limits()),
        Err(RespError::BulkNotTerminated)
    );
}

#[test]
fn a_header_line_beyond_the_limit_is_rejected_before_its_end_arrives() {
    let small = RespLimits {
        inline_bytes_max: 4,
        ..limits()
    };
    assert_eq!(parse(b"*12345", &small), Err(RespError::TooBigLine));
    assert_eq!(parse(b"+1234", &small), Ok(None));
}

#[test]
fn deep_nesting_is_rejected_instead_of_overflowing_the_stack() {
    let deep = b"*1\r\n".repeat(100_000);
    assert_eq!(parse(&deep, &limits()), Err(RespError::NestingTooDeep));
}

#[test]
fn replies_do_not_fall_back_to_inline() {
    assert_eq!(
        parse_reply(b"PONG\r\n", &limits()),
        Err(RespError::InvalidTypeByte(b'P'))
    );
}

#[test]
fn integers_parse_like_redis_string2ll() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    for bad in [
        &b"9223372036854775808"[..],
        b"",
        b"-",
        b"-0",
        b"01",
        b"+1",
        b" 1",
        b"1 ",
        b"1a",
    ] {
        assert_eq!(parse_i64(bad), None, "{}", bad.escape_ascii());
    }
}

#[test]
fn error_constructor_strips_line_breaks() {
    assert_eq!(Value::error("ERR a\r\nb").to_bytes(), b"-ERR a  b\r\n");
}

fn arb_line() -> impl Strategy<Value = String> {
    "[^\r\n]{0,12}"
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        arb_line().prop_map(Value::Simple),
        arb_line().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bulk),
        Just(Value::NullBulk),
        Just(Value::NullArray),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let small = RespLimits { bulk_bytes_max: 64, array_len_max: 16, inline_bytes_max: 32, nesting_depth_max: 4 };
        for limits in [limits(), small] {
            if let Ok(Some((_, used))) = parse(&bytes, &limits) {
                prop_assert!(used > 0 && used <= bytes.len());
            }
            if let Ok(Some((_, used))) = parse_reply(&bytes, &limits) {
                prop_assert!(used > 0 && used <= bytes.len());
            }
        }
    }

    #[test]
    fn encode_then_parse_round_trips(value in arb_value(), trailing in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut buf = value.to_bytes();
        let len = buf.len();
        buf.extend_from_slice(&trailing);
        prop_assert_eq!(parse_reply(&buf, &limits()), Ok(Some((value.clone(), len))));
        prop_assert_eq!(parse(&buf, &limits()), Ok(Some((value, len))));
        for split in 0..len {
            prop_assert_eq!(parse_reply(&buf[..split], &limits()), Ok(None));
        }
    }
}
