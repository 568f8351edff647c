//! Vendor XML → JSON: elements become keys, nested elements objects, repeated elements arrays,
//! text and CDATA strings (values are never retyped). Iterative, depth-limited, no DTDs, so
//! hostile input cannot recurse or expand entities.

use quick_xml::Reader;
use quick_xml::events::Event as XmlEvent;
use serde_json::{Map, Value};

/// Deeper than any vendor payload (WeCom's deepest is about 5).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML syntax: {0}")]
    Syntax(String),
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("document type declarations are not accepted")]
    DocType,
    #[error("no root element")]
    NoRoot,
    #[error("text or elements after the root element")]
    TrailingContent,
}

struct Frame {
    name: String,
    children: Map<String, Value>,
    text: String,
}

impl Frame {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            children: Map::new(),
            text: String::new(),
        }
    }

    /// The element's name and value.
    fn into_entry(mut self) -> (String, Value) {
        if self.children.is_empty() {
            return (self.name, Value::String(self.text));
        }
        // Mixed content is rare in vendor payloads; keep any real text rather than drop it.
        if !self.text.trim().is_empty() {
            self.children
                .insert("$text".into(), Value::String(self.text));
        }
        (self.name, Value::Object(self.children))
    }
}

/// Adds `value` under `key`, turning a repeated key into an array.
fn insert(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.entry(key) {
        serde_json::map::Entry::Vacant(slot) => {
            slot.insert(value);
        }
        serde_json::map::Entry::Occupied(mut slot) => match slot.get_mut() {
            Value::Array(items) => items.push(value),
            existing => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        },
    }
}

/// Converts a document to the object of its root element's children.
pub fn to_json(xml: &str) -> Result<Map<String, Value>, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        match event {
            XmlEvent::Start(e) => {
                if root.is_some() {
                    return Err(XmlError::TrailingContent);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push(Frame::new(e.name().as_ref()));
            }
            XmlEvent::Empty(e) => {
                let frame = Frame::new(e.name().as_ref());
                match stack.last_mut() {
                    Some(parent) => insert(
                        &mut parent.children,
                        frame.name,
                        Value::String(String::new()),
                    ),
                    None if root.is_none() => root = Some(Map::new()),
                    None => return Err(XmlError::TrailingContent),
                }
            }
            XmlEvent::End(_) => {
                let frame = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unmatched end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => {
                        let (name, value) = frame.into_entry();
                        insert(&mut parent.children, name, value);
                    }
                    None => root = Some(frame.children),
                }
            }
            XmlEvent::Text(t) => push_text(&mut stack, &t.xml10_content(), root.is_some())?,
            XmlEvent::CData(c) => {
                push_text(&mut stack, &c.into_inner(), root.is_some())?;
            }
            XmlEvent::GeneralRef(r) => {
                let reference = format!("&{};", r.xml10_content());
                let resolved = quick_xml::escape::unescape(&reference)
                    .map_err(|e| XmlError::Syntax(e.to_string()))?;
                push_text(&mut stack, &resolved, root.is_some())?;
            }
            XmlEvent::DocType(_) => return Err(XmlError::DocType),
            XmlEvent::Decl(_) | XmlEvent::Comment(_) | XmlEvent::PI(_) => {}
            XmlEvent::Eof => {
                if !stack.is_empty() {
                    return Err(XmlError::Syntax("unclosed element".into()));
                }
                return root.ok_or(XmlError::NoRoot);
            }
        }
    }
}

fn push_text(stack: &mut [Frame], text: &str, after_root: bool) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(frame) => {
            frame.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None if after_root => Err(XmlError::TrailingContent),
        None => Err(XmlError::NoRoot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cdata_plain_nested_repeated_and_entities() {
        let xml = "<?xml version=\"1.0\"?>\n<xml>\n  <A><![CDATA[x<y]]></A>\n  <B>plain &amp; &#20320;</B>\n  <C/>\
                   <Ext><Item><Name>a</Name></Item><Item><Name>b</Name></Item></Ext></xml>";
        let v = Value::Object(to_json(xml).unwrap());
        assert_eq!(
            v,
            json!({"A": "x<y", "B": "plain & 你", "C": "", "Ext": {"Item": [{"Name": "a"}, {"Name": "b"}]}})
        );
    }

    #[test]
    fn hostile_documents_are_rejected() {
        assert_eq!(to_json(""), Err(XmlError::NoRoot));
        assert_eq!(to_json("hello"), Err(XmlError::NoRoot));
        assert!(to_json("<a><b></a>").is_err());
        assert_eq!(to_json("<a></a><b></b>"), Err(XmlError::TrailingContent));
        assert_eq!(
            to_json("<!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>"),
            Err(XmlError::DocType)
        );
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(to_json(&deep), Err(XmlError::TooDeep));
        assert!(to_json("<x>&unknown;</x>").is_err());
    }
}
