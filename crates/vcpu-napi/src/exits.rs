//! The exit kinds and the exit record as the facade sees them: both described by
//! `vcpu-kvm` itself (`VcpuExit::SCHEMA`, `ExitRecord::LAYOUT`), converted to JS names
//! here and nowhere else. `scripts/exit-layout.js` generates the TypeScript types from
//! these descriptions.

use std::collections::HashMap;

use napi::bindgen_prelude::{BigInt, Env, Object, Result};
use napi_derive::napi;
use vcpu_kvm::exit::ExitValue;
use vcpu_kvm::{ExitRecord, Pending, VcpuExit};

/// `snake_case` as JS spells it (`camelCase`).
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The exit record's layout: its size, each field's byte offset and size, and the
/// values of its `pending` field. The facade reads the record through these and
/// nothing else.
#[napi(object)]
pub struct ExitRecordLayout {
    pub size: u32,
    pub offsets: HashMap<String, u32>,
    pub sizes: HashMap<String, u32>,
    pub pending: HashMap<String, u32>,
}

#[napi]
pub fn exit_record_layout() -> ExitRecordLayout {
    ExitRecordLayout {
        size: ExitRecord::SIZE as u32,
        offsets: ExitRecord::LAYOUT
            .iter()
            .map(|(n, o, _)| (camel(n), *o as u32))
            .collect(),
        sizes: ExitRecord::LAYOUT
            .iter()
            .map(|(n, _, s)| (camel(n), *s as u32))
            .collect(),
        pending: Pending::NAMES.iter().map(|(n, p)| (n.to_string(), *p as u32)).collect(),
    }
}

/// The exit kinds, in the order of the codes `NativeVcpu.run()` returns.
#[napi]
pub fn exit_kinds() -> Vec<&'static str> {
    VcpuExit::KINDS.to_vec()
}

/// One payload field of an exit kind, as JS sees it.
#[napi(object)]
pub struct ExitFieldJs {
    /// Its name in camelCase.
    pub name: String,
    /// `bigint`, `number` or `boolean`.
    pub ts_type: String,
    pub doc: String,
}

/// One exit kind with its documentation and payload.
#[napi(object)]
pub struct ExitKindJs {
    pub name: String,
    pub doc: String,
    pub fields: Vec<ExitFieldJs>,
}

/// Every exit kind, in code order, with its payload: what the TypeScript `VcpuExit`
/// type is generated from.
#[napi]
pub fn exit_schema() -> Vec<ExitKindJs> {
    VcpuExit::SCHEMA
        .iter()
        .map(|k| ExitKindJs {
            name: k.name.to_string(),
            doc: k.doc.trim().to_string(),
            fields: k
                .fields
                .iter()
                .map(|f| ExitFieldJs {
                    name: camel(f.name),
                    ts_type: match f.ty {
                        "u64" => "bigint",
                        "bool" => "boolean",
                        _ => "number",
                    }
                    .to_string(),
                    doc: f.doc.trim().to_string(),
                })
                .collect(),
        })
        .collect()
}

/// `exit` as a plain JS object: `kind` and its payload fields.
pub fn exit_object<'env>(env: &'env Env, exit: VcpuExit) -> Result<Object<'env>> {
    let mut object = Object::new(env)?;
    object.set("kind", exit.kind())?;
    for (name, value) in exit.fields() {
        let name = camel(name);
        match value {
            ExitValue::U64(v) => object.set(name, BigInt::from(v))?,
            ExitValue::U32(v) => object.set(name, v)?,
            ExitValue::Bool(v) => object.set(name, v)?,
        }
    }
    Ok(object)
}
