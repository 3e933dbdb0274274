//! The messages of a conversation, in OpenAI's Chat Completions shape (the
//! one most clients speak), so they pass to OpenAI-compatible upstreams as
//! they came and every other provider translates from one model.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// Instructions for the model from the application's developer (OpenAI's
    /// newer name for system; providers without it get a system message).
    Developer,
    /// The application's user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering the assistant's `tool_calls`.
    Tool,
}

impl Role {
    /// `system` or `developer`: instructions rather than conversation.
    pub fn is_instruction(self) -> bool {
        matches!(self, Self::System | Self::Developer)
    }
}

/// One message of a conversation. Fields it does not know are ignored when
/// it is read; the HTTP edge refuses them before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says: text, or (from the user) text and image parts. Empty
    /// for an assistant turn that only calls tools.
    #[serde(default, deserialize_with = "nullable", serialize_with = "Content::serialize_for")]
    pub content: Content,
    /// A participant's name, for providers that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tools the assistant called in this turn.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message from `role` saying `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Content::Text(content.into()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// An assistant turn that calls `tool_calls`.
    pub fn tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            ..Self::new(Role::Assistant, "")
        }
    }

    /// The result of the tool call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }

    /// Its text: the string, or the text parts joined.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        self.content.text()
    }

    /// Bytes of text it carries (content, name, tool calls), the base of
    /// token estimates.
    pub fn text_bytes(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum();
        self.content.text_bytes() + self.name.as_ref().map_or(0, String::len) + calls
    }

    /// Why this message cannot be sent, if it cannot.
    pub fn problem(&self) -> Option<String> {
        match self.role {
            Role::Tool if self.tool_call_id.is_none() => return Some("a `tool` message needs `tool_call_id`".into()),
            Role::Assistant | Role::Tool => {}
            _ if !self.tool_calls.is_empty() => return Some("only `assistant` messages carry `tool_calls`".into()),
            _ => {}
        }
        if self.role != Role::Tool && self.tool_call_id.is_some() {
            return Some("only `tool` messages carry `tool_call_id`".into());
        }
        if self.role != Role::User && self.content.images().next().is_some() {
            return Some("only `user` messages carry images".into());
        }
        self.content.images().find_map(ImageUrl::problem)
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts, in order.
    Parts(Vec<Part>),
}

impl Default for Content {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

impl Content {
    /// The text: the string, or the text parts joined.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Text(text) => text.as_str().into(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|part| match part {
                    Part::Text { text } => Some(text.as_str()),
                    Part::Image { .. } => None,
                })
                .collect::<String>()
                .into(),
        }
    }

    /// Bytes of text (image URLs left out: images are counted apart).
    pub fn text_bytes(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Parts(parts) => parts
                .iter()
                .map(|part| match part {
                    Part::Text { text } => text.len(),
                    Part::Image { .. } => 0,
                })
                .sum(),
        }
    }

    /// The images, in order.
    pub fn images(&self) -> impl Iterator<Item = &ImageUrl> {
        let parts = match self {
            Self::Text(_) => &[][..],
            Self::Parts(parts) => parts.as_slice(),
        };
        parts.iter().filter_map(|part| match part {
            Part::Image { image_url } => Some(image_url),
            Part::Text { .. } => None,
        })
    }

    /// No text and no parts.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Text(text) => text.is_empty(),
            Self::Parts(parts) => parts.is_empty(),
        }
    }

    /// As OpenAI takes it: empty content (an assistant turn that only calls
    /// tools) is `null`.
    fn serialize_for<S: Serializer>(content: &Self, serializer: S) -> Result<S::Ok, S::Error> {
        match content {
            Self::Text(text) if text.is_empty() => serializer.serialize_none(),
            Self::Text(text) => serializer.serialize_str(text),
            Self::Parts(parts) => parts.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(Self::Text(text)),
            serde_json::Value::Array(parts) => {
                let parts = parts.into_iter().map(serde_json::from_value).collect::<Result<_, _>>();
                parts
                    .map(Self::Parts)
                    .map_err(|e| D::Error::custom(format!("a content part: {e}")))
            }
            other => {
                let kind = match other {
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Object(_) => "an object",
                    _ => "null",
                };
                Err(D::Error::custom(format!(
                    "invalid type: `content` is a string or an array of `text` and `image_url` parts, not {kind}"
                )))
            }
        }
    }
}

/// One part of a user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    #[serde(rename = "image_url")]
    Image {
        /// Where it is.
        image_url: ImageUrl,
    },
}

/// An image: an `https` URL, or the image itself as a `data:` URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `auto`, `low` or `high` (OpenAI's detail level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// The media type and base64 data of a `data:` URL.
    pub fn inline(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (media_type, data) = rest.split_once(";base64,")?;
        Some((media_type, data))
    }

    fn problem(&self) -> Option<String> {
        if self.inline().is_some() || self.url.starts_with("https://") {
            return None;
        }
        Some("an image is an `https://` URL or a base64 `data:` URL".into())
    }
}

/// A call of a function tool by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Its id, which the `tool` message with the result names.
    pub id: String,
    /// The function called.
    pub name: String,
    /// Its arguments: a JSON object, as text.
    pub arguments: String,
}

impl ToolCall {
    /// Its arguments as a JSON value (`{}` when empty), for providers that
    /// take them as an object; `provider` refuses text that is not JSON.
    pub(crate) fn arguments_object(&self, provider: &'static str) -> Result<serde_json::Value, crate::ProviderError> {
        if self.arguments.trim().is_empty() {
            return Ok(serde_json::Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments).map_err(|e| {
            let why = format!("the arguments of tool call `{}` are not JSON ({e})", self.id);
            crate::ProviderError::new(provider, crate::ErrorKind::InvalidRequest(why))
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type", default = "function")]
    kind: String,
    function: WireFunctionCall,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

fn function() -> String {
    "function".into()
}

impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Call<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            function: Function<'a>,
        }
        #[derive(Serialize)]
        struct Function<'a> {
            name: &'a str,
            arguments: &'a str,
        }
        let function = Function {
            name: &self.name,
            arguments: &self.arguments,
        };
        Call {
            id: &self.id,
            kind: "function",
            function,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireToolCall::deserialize(deserializer)?;
        if wire.kind != "function" {
            return Err(serde::de::Error::custom(format!(
                "tool call type `{}` (only `function` is)",
                wire.kind
            )));
        }
        Ok(Self {
            id: wire.id,
            name: wire.function.name,
            arguments: wire.function.arguments,
        })
    }
}

/// Reads `null` as the default (for `#[serde(deserialize_with)]`).
pub fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
