//! What a call may ask of the model besides text: tools, structured output,
//! stop sequences, reasoning effort. OpenAI's shapes, as in [`super::message`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its parameters, as a JSON schema (an object schema).
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly (OpenAI).
    pub strict: Option<bool>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTool<F> {
    #[serde(rename = "type")]
    kind: String,
    function: F,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Serialize)]
struct WireFunctionRef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let function = WireFunctionRef {
            name: &self.name,
            description: self.description.as_deref(),
            parameters: self.parameters.as_ref(),
            strict: self.strict,
        };
        WireTool {
            kind: "function".to_owned(),
            function,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireTool::<WireFunction>::deserialize(deserializer)?;
        if wire.kind != "function" {
            let message = format!("tool type `{}` (only `function` tools are)", wire.kind);
            return Err(serde::de::Error::custom(message));
        }
        let function = wire.function;
        if function.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(serde::de::Error::custom(
                "a tool's `parameters` must be a JSON schema object",
            ));
        }
        Ok(Self {
            name: function.name,
            description: function.description,
            parameters: function.parameters,
            strict: function.strict,
        })
    }
}

impl Tool {
    /// Bytes of its name, description and schema, the base of token estimates.
    pub fn text_bytes(&self) -> usize {
        let schema = self.parameters.as_ref().map_or(0, json_bytes);
        self.name.len() + self.description.as_ref().map_or(0, String::len) + schema
    }
}

/// Whether, and which, tools the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool.
    None,
    /// At least one tool.
    Required,
    /// This function.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::None => serializer.serialize_str("none"),
            Self::Required => serializer.serialize_str("required"),
            Self::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Mode(String),
            Named(WireTool<Named>),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: String,
        }
        match Wire::deserialize(deserializer)? {
            Wire::Mode(mode) => match mode.as_str() {
                "auto" => Ok(Self::Auto),
                "none" => Ok(Self::None),
                "required" => Ok(Self::Required),
                other => Err(serde::de::Error::custom(format!(
                    "tool_choice `{other}` (it is `auto`, `none`, `required` or a named function)"
                ))),
            },
            Wire::Named(named) if named.kind == "function" => Ok(Self::Function(named.function.name)),
            Wire::Named(named) => Err(serde::de::Error::custom(format!(
                "tool_choice type `{}` (only `function` is)",
                named.kind
            ))),
        }
    }
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchema,
    },
}

/// A named JSON schema for structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchema {
    /// Its name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the answer must follow it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// How hard a reasoning model thinks before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// No reasoning (gpt-5.1).
    None,
    /// As little as the model allows.
    Minimal,
    /// Little.
    Low,
    /// The default of most models.
    Medium,
    /// Much.
    High,
}

impl ReasoningEffort {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Reads `stop`: one sequence or a list of them (for `#[serde(deserialize_with)]`).
pub fn stop_sequences<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Wire>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(Wire::One(stop)) => vec![stop],
        Some(Wire::Many(stops)) => stops,
    })
}

/// The length of `value` as JSON text, counted without writing it out.
pub(crate) fn json_bytes(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(0, |()| count.0)
}
