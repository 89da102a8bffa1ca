use super::*;

fn request(words: &[&str]) -> Result<Option<Request>, CommandError> {
    let value = Value::Array(words.iter().map(|w| Value::bulk(w.as_bytes())).collect());
    Request::from_value(value, &CommandLimits::default())
}

fn ok(words: &[&str]) -> Request {
    request(words).expect("valid").expect("not empty")
}

fn err_text(words: &[&str]) -> String {
    request(words).expect_err("invalid").to_string()
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn names_are_case_insensitive() {
    assert_eq!(ok(&["gEt", "k"]), Request::Read(ReadOp::Get(b("k"))));
    assert_eq!(ok(&["PING"]), Request::Local(LocalOp::Ping(None)));
}

#[test]
fn unknown_command_text_matches_redis() {
    assert_eq!(
        err_text(&["FOO", "a", "b"]),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err_text(&["foo"]),
        "ERR unknown command 'foo', with args beginning with: "
    );
}

#[test]
fn unknown_command_text_is_bounded_and_has_no_line_breaks() {
    let long = "x".repeat(1000);
    let reply = request(&[&long, &long, "a\r\nb"]).unwrap_err().to_reply();
    let Value::Error(text) = reply else {
        panic!("not an error")
    };
    assert!(text.len() < 400, "{} bytes", text.len());
    assert!(!text.contains('\n'));
}

#[test]
fn wrong_arity_text_uses_the_lowercase_name() {
    assert_eq!(
        err_text(&["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(&["Ping", "a", "b"]),
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(
        err_text(&["set", "k"]),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        err_text(&["cas", "k", "a"]),
        "ERR wrong number of arguments for 'cas' command"
    );
    assert_eq!(
        err_text(&["del"]),
        "ERR wrong number of arguments for 'del' command"
    );
}

#[test]
fn requests_are_classified_by_path() {
    for (words, class) in [
        (&["PING"][..], CommandClass::Local),
        (&["ECHO", "x"], CommandClass::Local),
        (&["INFO", "raft"], CommandClass::Local),
        (&["GET", "k"], CommandClass::Read),
        (&["EXISTS", "k", "j"], CommandClass::Read),
        (&["MGET", "k"], CommandClass::Read),
        (&["SET", "k", "v"], CommandClass::Write),
        (&["DEL", "k"], CommandClass::Write),
        (&["APPEND", "k", "v"], CommandClass::Write),
        (&["INCR", "k"], CommandClass::Write),
        (&["INCRBY", "k", "5"], CommandClass::Write),
        (&["CAS", "k", "a", "b"], CommandClass::Write),
    ] {
        assert_eq!(ok(words).class(), class, "{words:?}");
    }
}

#[test]
fn set_options_parse_in_any_order() {
    let set = |condition, get| {
        Request::Write(WriteOp::Set {
            key: b("k"),
            value: b("v"),
            condition,
            get,
        })
    };
    assert_eq!(ok(&["SET", "k", "v"]), set(SetCondition::Always, false));
    assert_eq!(
        ok(&["SET", "k", "v", "nx"]),
        set(SetCondition::IfAbsent, false)
    );
    assert_eq!(
        ok(&["SET", "k", "v", "GET", "XX"]),
        set(SetCondition::IfPresent, true)
    );
    assert_eq!(
        ok(&["SET", "k", "v", "NX", "GET"]),
        set(SetCondition::IfAbsent, true)
    );
    assert_eq!(
        ok(&["SET", "k", "v", "KEEPTTL"]),
        set(SetCondition::Always, false)
    );
}

#[test]
fn set_rejects_nx_with_xx_and_unknown_options() {
    assert_eq!(err_text(&["SET", "k", "v", "NX", "XX"]), "ERR syntax error");
    assert_eq!(err_text(&["SET", "k", "v", "BOGUS"]), "ERR syntax error");
}

#[test]
fn set_with_expiry_is_refused_clearly() {
    assert_eq!(
        request(&["SET", "k", "v", "EX", "10"]),
        Err(CommandError::ExpiryUnsupported)
    );
    assert!(err_text(&["SET", "k", "v", "px", "10"]).starts_with("ERR expiry is not supported"));
    assert_eq!(err_text(&["SET", "k", "v", "EX"]), "ERR syntax error");
}

#[test]
fn incr_is_incrby_one_and_incrby_needs_an_integer() {
    assert_eq!(
        ok(&["INCR", "n"]),
        Request::Write(WriteOp::IncrBy {
            key: b("n"),
            delta: 1
        })
    );
    assert_eq!(
        ok(&["INCRBY", "n", "-7"]),
        Request::Write(WriteOp::IncrBy {
            key: b("n"),
            delta: -7
        })
    );
    assert_eq!(
        err_text(&["INCRBY", "n", "1.5"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err_text(&["INCRBY", "n", "99999999999999999999"]),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn values_over_the_limit_are_refused_before_the_log() {
    let limits = CommandLimits { value_bytes_max: 3 };
    let too_big = |words: &[&str]| {
        let args = words[1..].iter().map(|w| b(w)).collect();
        Request::from_args(b(words[0]), args, &limits)
    };
    assert!(too_big(&["SET", "k", "abc"]).is_ok());
    assert_eq!(
        too_big(&["SET", "k", "abcd"]),
        Err(CommandError::ValueTooLarge {
            value_bytes: 4,
            value_bytes_max: 3
        })
    );
    assert_eq!(
        too_big(&["SET", "k", "abcd"]).unwrap_err().to_string(),
        "ERR value is too large (4 bytes, limit 3)"
    );
    assert!(too_big(&["APPEND", "k", "abcd"]).is_err());
    assert!(too_big(&["CAS", "k", "abcd", "a"]).is_err());
    assert!(too_big(&["CAS", "k", "a", "abcd"]).is_err());
    assert!(
        too_big(&["GET", "abcd"]).is_ok(),
        "keys are bounded by the RESP limits"
    );
}

#[test]
fn empty_requests_yield_nothing_and_non_bulk_requests_are_refused() {
    assert_eq!(request(&[]), Ok(None));
    let nested = Value::Array(vec![Value::bulk(b("GET")), Value::Array(vec![])]);
    assert_eq!(
        Request::from_value(nested, &CommandLimits::default()),
        Err(CommandError::NotBulkStrings)
    );
    assert_eq!(
        Request::from_value(Value::Integer(1), &CommandLimits::default()),
        Err(CommandError::NotBulkStrings)
    );
}

#[test]
fn ping_and_echo_answer_without_the_node() {
    let reply = |words: &[&str]| match ok(words) {
        Request::Local(op) => op.stateless_reply(),
        other => panic!("not local: {other:?}"),
    };
    assert_eq!(reply(&["PING"]), Some(Value::Simple("PONG".into())));
    assert_eq!(reply(&["PING", "hi"]), Some(Value::bulk(b("hi"))));
    assert_eq!(reply(&["ECHO", "hi"]), Some(Value::bulk(b("hi"))));
    assert_eq!(reply(&["INFO"]), None);
    assert_eq!(
        ok(&["INFO", "Raft"]),
        Request::Local(LocalOp::Info(vec!["raft".into()]))
    );
}

/// A follower forwards a read as the arguments a client would send; the
/// leader types them back into the same read.
#[test]
fn a_read_forwarded_as_arguments_is_the_same_read_at_the_leader() {
    for words in [
        &["GET", "k"][..],
        &["get", "\u{0}bin"],
        &["EXISTS", "a", "a", "b"],
        &["MGET", "x"],
        &["mget", "x", "y", "z"],
    ] {
        let Request::Read(op) = ok(words) else {
            panic!("{words:?} is a read");
        };
        let again = Request::from_value(
            Value::Array(op.to_args().into_iter().map(Value::Bulk).collect()),
            &CommandLimits::default(),
        );
        assert_eq!(again, Ok(Some(Request::Read(op))), "{words:?}");
    }
}
