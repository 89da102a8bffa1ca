//! Redis AUTH and HELLO on the client port (DESIGN.md 9): one password for
//! the `default` user, as `requirepass` gives in Redis; the answers are
//! Redis's own words, so that redis-cli, redis-benchmark and client
//! libraries react as they do to Redis.

use super::ServerContext;
use super::connection::Session;
use crate::kv::resp::Value;

/// The only user there is (Redis's user when no ACLs are set up).
const DEFAULT_USER: &[u8] = b"default";

pub(super) fn noauth() -> Value {
    Value::Error("NOAUTH Authentication required.".into())
}

fn wrongpass() -> Value {
    Value::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

/// Commands a connection may send before AUTH: AUTH and HELLO themselves
/// (handled before this is asked), PING (health checks) and QUIT.
pub(super) fn allowed_before_auth(value: &Value) -> bool {
    let Value::Array(items) = value else {
        return false;
    };
    match items.first() {
        Some(Value::Bulk(name)) => [&b"PING"[..], b"QUIT", b"AUTH", b"HELLO"]
            .iter()
            .any(|allowed| name.eq_ignore_ascii_case(allowed)),
        // An empty request is answered with nothing either way.
        None => true,
        Some(_) => false,
    }
}

/// Checks `user` and `password`; the password is compared in constant
/// time even when the user is wrong, so that timing tells nothing.
fn check(user: &[u8], password: &[u8], session: &mut Session, ctx: &ServerContext) -> Value {
    let password_ok = match &ctx.password {
        Some(expected) => expected.matches(password),
        // Redis's default user without requirepass is `nopass`: any
        // password is accepted.
        None => true,
    };
    if password_ok && user == DEFAULT_USER {
        session.authenticated = true;
        Value::ok()
    } else {
        wrongpass()
    }
}

/// `AUTH password` or `AUTH username password`.
pub(super) fn auth(args: &[Vec<u8>], session: &mut Session, ctx: &ServerContext) -> Value {
    match args {
        [_, password] => {
            if ctx.password.is_none() {
                return Value::Error(
                    "ERR AUTH <password> called without any password configured for the \
                     default user. Are you sure your configuration is correct?"
                        .into(),
                );
            }
            check(DEFAULT_USER, password, session, ctx)
        }
        [_, user, password] => check(user, password, session, ctx),
        _ => Value::Error("ERR wrong number of arguments for 'auth' command".into()),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`: only
/// RESP2 is spoken here. The reply is Redis's field list, as RESP2 shows it.
pub(super) fn hello(
    args: &[Vec<u8>],
    session: &mut Session,
    client_id: u64,
    ctx: &ServerContext,
) -> Value {
    let mut rest = args[1..].iter();
    if let Some(version) = rest.next() {
        match std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            Some(2) => {}
            Some(_) => return Value::Error("NOPROTO unsupported protocol version".into()),
            None => {
                return Value::Error(
                    "ERR Protocol version is not an integer or out of range".into(),
                );
            }
        }
    }
    while let Some(option) = rest.next() {
        if option.eq_ignore_ascii_case(b"AUTH") {
            let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                return Value::Error("ERR Syntax error in HELLO option 'AUTH'".into());
            };
            if let Value::Error(e) = check(user, password, session, ctx) {
                return Value::Error(e);
            }
        } else if option.eq_ignore_ascii_case(b"SETNAME") {
            if rest.next().is_none() {
                return Value::Error("ERR Syntax error in HELLO option 'SETNAME'".into());
            }
        } else {
            return Value::Error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
        }
    }
    if !session.authenticated {
        return Value::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        );
    }
    let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
    Value::Array(vec![
        bulk("server"),
        bulk("sraft"),
        bulk("version"),
        bulk(env!("CARGO_PKG_VERSION")),
        bulk("proto"),
        Value::Integer(2),
        bulk("id"),
        Value::Integer((client_id >> 1) as i64),
        bulk("mode"),
        bulk("standalone"),
        bulk("role"),
        bulk("master"),
        bulk("modules"),
        Value::Array(Vec::new()),
    ])
}
