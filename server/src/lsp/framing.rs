//! Keeps one bad message from ending the session: frames from the client are checked before the
//! LSP transport sees them, and a body that is not JSON-RPC becomes a `coverlay/malformed` request
//! (id `null`) whose answer is the JSON-RPC error the client should get.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Request, Response};

/// The method malformed messages are turned into.
pub const MALFORMED: &str = "coverlay/malformed";

/// Largest body accepted; a larger `Content-Length` is answered as an invalid request.
const MAX_BODY: usize = 256 << 20;

/// Copies LSP frames from `input` to `output` until `input` ends, replacing each body the
/// transport could not decode.
pub async fn sanitize(input: impl AsyncRead + Unpin, mut output: impl AsyncWrite + Unpin) {
    let mut input = BufReader::new(input);
    loop {
        let mut length: Option<usize> = None;
        let mut headers = 0;
        loop {
            let mut line = String::new();
            match input.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if headers > 0 {
                    break;
                }
                continue;
            }
            headers += 1;
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                }
            }
        }
        let body = match length {
            Some(length) if length <= MAX_BODY => {
                let mut body = vec![0; length];
                if input.read_exact(&mut body).await.is_err() {
                    return;
                }
                checked(body)
            }
            _ => {
                tracing::warn!("a message without a usable Content-Length header");
                malformed(ErrorCode::InvalidRequest, "no usable Content-Length header")
            }
        };
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        let written = async {
            output.write_all(header.as_bytes()).await?;
            output.write_all(&body).await?;
            output.flush().await
        };
        if written.await.is_err() {
            return;
        }
    }
}

/// `body` itself when the transport can decode it, else its replacement.
fn checked(body: Vec<u8>) -> Vec<u8> {
    let decodes = serde_json::from_slice::<Request>(&body).is_ok()
        || serde_json::from_slice::<Response>(&body).is_ok();
    if decodes {
        return body;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(_) => malformed(ErrorCode::InvalidRequest, "not a JSON-RPC 2.0 message"),
        Err(error) => malformed(ErrorCode::ParseError, &format!("not JSON: {error}")),
    }
}

fn malformed(code: ErrorCode, message: &str) -> Vec<u8> {
    tracing::warn!("malformed message from the client: {message}");
    let request = json!({
        "jsonrpc": "2.0",
        "id": null,
        "method": MALFORMED,
        "params": {"code": code.code(), "message": message},
    });
    serde_json::to_vec(&request).expect("JSON values serialise")
}

/// The error a `coverlay/malformed` request answers with.
pub fn error_of(params: &Value) -> Error {
    let code = params["code"]
        .as_i64()
        .map_or(ErrorCode::ParseError, ErrorCode::from);
    Error {
        message: params["message"]
            .as_str()
            .unwrap_or("malformed message")
            .to_owned()
            .into(),
        code,
        data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn through(input: &[u8]) -> String {
        let mut output = Vec::new();
        sanitize(input, &mut output).await;
        String::from_utf8(output).unwrap()
    }

    fn frame(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[tokio::test]
    async fn good_messages_pass_unchanged_and_bad_ones_become_requests_for_an_error() {
        let good = r#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#;
        let answer = r#"{"jsonrpc":"2.0","id":7,"result":null}"#;
        let input = format!(
            "{}{}{}{}",
            frame(good),
            frame("{not json"),
            frame(r#"{"jsonrpc":"1.0","id":{"x":1}}"#),
            frame(answer)
        );
        let output = through(input.as_bytes()).await;
        let bodies: Vec<&str> = output
            .split("Content-Length: ")
            .skip(1)
            .map(|f| f.split_once("\r\n\r\n").unwrap().1)
            .collect();
        assert_eq!(bodies.len(), 4);
        assert_eq!(bodies[0], good);
        assert_eq!(bodies[3], answer);
        let parse: Value = serde_json::from_str(bodies[1]).unwrap();
        assert_eq!(parse["method"], MALFORMED);
        assert_eq!(parse["id"], Value::Null);
        assert_eq!(error_of(&parse["params"]).code, ErrorCode::ParseError);
        let invalid: Value = serde_json::from_str(bodies[2]).unwrap();
        assert_eq!(error_of(&invalid["params"]).code, ErrorCode::InvalidRequest);
    }

    #[tokio::test]
    async fn a_frame_without_a_length_is_answered_and_the_stream_goes_on() {
        let good = r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#;
        let input = format!("Content-Type: x\r\n\r\n{}", frame(good));
        let output = through(input.as_bytes()).await;
        assert!(output.contains(MALFORMED), "{output}");
        assert!(output.ends_with(good), "{output}");
    }
}
