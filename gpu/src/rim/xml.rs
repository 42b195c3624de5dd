//! A small XML tree and W3C Canonical XML 1.1 (inclusive, without comments) over it:
//! what enveloped XML signatures on NVIDIA's reference integrity manifests need.
//!
//! The tree keeps raw qualified names because canonical XML writes prefixes exactly as
//! the document did. No DTDs or external entities are read (quick-xml does not resolve
//! them, and a document with a DOCTYPE is refused).

use std::collections::BTreeMap;

use quick_xml::events::Event;

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed (or uses a feature not accepted here).
    #[error("XML: {0}")]
    Syntax(String),
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// An element.
    Element(Element),
    /// Character data (unescaped, line ends normalised).
    Text(String),
}

/// An element with its raw qualified name and attributes (namespace declarations
/// included, in document order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Qualified name as written (`ds:Signature`).
    pub name: String,
    /// Attributes as written, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Children in order.
    pub children: Vec<Node>,
}

fn err(e: impl std::fmt::Display) -> XmlError {
    XmlError::Syntax(e.to_string())
}

fn normalise_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Parses a document into its root element (comments and processing instructions dropped).
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let ev = reader.read_event().map_err(err)?;
        match ev {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return Err(XmlError::Syntax("content after the root element".into()));
            }
            Event::Start(ref s) | Event::Empty(ref s) => {
                let name = String::from_utf8(s.name().as_ref().to_vec()).map_err(err)?;
                let mut attrs = Vec::new();
                for a in s.attributes() {
                    let a = a.map_err(err)?;
                    let k = String::from_utf8(a.key.as_ref().to_vec()).map_err(err)?;
                    let v = a.unescape_value().map_err(err)?;
                    // Attribute-value normalisation (XML 1.0 §3.3.3) for CDATA attributes.
                    let v: String = normalise_newlines(&v)
                        .chars()
                        .map(|c| if matches!(c, '\t' | '\n') { ' ' } else { c })
                        .collect();
                    attrs.push((k, v));
                }
                let el = Element {
                    name,
                    attrs,
                    children: Vec::new(),
                };
                if matches!(ev, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(p) => p.children.push(Node::Element(el)),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(err)?;
                if let Some(p) = stack.last_mut() {
                    p.children.push(Node::Text(normalise_newlines(&s)));
                } else if !s.trim().is_empty() {
                    return Err(XmlError::Syntax("text outside the root element".into()));
                }
            }
            Event::CData(c) => {
                let s = String::from_utf8(c.into_inner().to_vec()).map_err(err)?;
                if let Some(p) = stack.last_mut() {
                    p.children.push(Node::Text(normalise_newlines(&s)));
                }
            }
            Event::DocType(_) => return Err(XmlError::Syntax("DOCTYPE is not accepted".into())),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax("unclosed element".into()));
    }
    root.ok_or_else(|| XmlError::Syntax("no root element".into()))
}

impl Element {
    /// Local part of the name.
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// Prefix of the name (`""` for none).
    pub fn prefix(&self) -> &str {
        self.name.split_once(':').map(|(p, _)| p).unwrap_or("")
    }

    /// Value of the attribute written `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with local name `local`.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.elements().find(|e| e.local_name() == local)
    }

    /// Concatenated text content.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Element(e) => s.push_str(&e.text()),
            }
        }
        s
    }

    /// Namespace declarations made on this element: prefix (`""` = default) → URI.
    fn declarations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().filter_map(|(k, v)| {
            if k == "xmlns" {
                Some(("", v.as_str()))
            } else {
                k.strip_prefix("xmlns:").map(|p| (p, v.as_str()))
            }
        })
    }
}

/// In-scope namespaces: prefix → URI.
pub type Scope = BTreeMap<String, String>;

/// The namespaces in scope on `el` given its parent's scope.
pub fn scope_of(parent: &Scope, el: &Element) -> Scope {
    let mut s = parent.clone();
    for (p, u) in el.declarations() {
        s.insert(p.to_string(), u.to_string());
    }
    s
}

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// Canonical XML 1.1 of the subtree at `el`, whose ancestors declare `inherited`
/// namespaces, leaving out any element for which `skip` is true (the enveloped signature).
pub fn canonicalize(el: &Element, inherited: &Scope, skip: &dyn Fn(&Element) -> bool) -> String {
    let mut out = String::new();
    // The apex renders every in-scope namespace; an empty default is not rendered.
    let mut rendered = Scope::new();
    rendered.insert(String::new(), String::new());
    write_element(el, inherited, &rendered, skip, &mut out);
    out
}

fn write_element(
    el: &Element,
    parent_scope: &Scope,
    rendered: &Scope,
    skip: &dyn Fn(&Element) -> bool,
    out: &mut String,
) {
    let scope = scope_of(parent_scope, el);
    // Namespace nodes to render: those whose value differs from what the nearest output
    // ancestor rendered (default namespace first, then by prefix: BTreeMap order).
    let mut now_rendered = rendered.clone();
    let mut ns_out = Vec::new();
    for (p, u) in &scope {
        if p == "xml" {
            continue;
        }
        // The apex starts with an empty default namespace "rendered", so `xmlns=""` is
        // only written to undo a default declared above.
        let differs = !matches!(rendered.get(p), Some(before) if before == u);
        if differs {
            ns_out.push((p.clone(), u.clone()));
            now_rendered.insert(p.clone(), u.clone());
        }
    }
    // Attributes sorted by (namespace URI, local name); unqualified ones have no URI.
    let mut attrs: Vec<(String, String, &str, &str)> = el
        .attrs
        .iter()
        .filter(|(k, _)| k != "xmlns" && !k.starts_with("xmlns:"))
        .map(|(k, v)| {
            let (uri, local) = match k.split_once(':') {
                Some(("xml", l)) => ("http://www.w3.org/XML/1998/namespace".to_string(), l),
                Some((p, l)) => (scope.get(p).cloned().unwrap_or_default(), l),
                None => (String::new(), k.as_str()),
            };
            (uri, local.to_string(), k.as_str(), v.as_str())
        })
        .collect();
    attrs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out.push('<');
    out.push_str(&el.name);
    for (p, u) in &ns_out {
        out.push_str(if p.is_empty() { " xmlns" } else { " xmlns:" });
        out.push_str(p);
        out.push_str("=\"");
        escape_attr(u, out);
        out.push('"');
    }
    for (_, _, k, v) in &attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        escape_attr(v, out);
        out.push('"');
    }
    out.push('>');
    for c in &el.children {
        match c {
            Node::Text(t) => escape_text(t, out),
            Node::Element(e) if skip(e) => {}
            Node::Element(e) => write_element(e, &scope, &now_rendered, skip, out),
        }
    }
    out.push_str("</");
    out.push_str(&el.name);
    out.push('>');
}
