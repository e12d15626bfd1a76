//! Just enough DER to swap a certificate's subject and re-sign it.
//!
//! rcgen keeps one value per attribute type in a distinguished name, but
//! Kubernetes reads *every* O in a client certificate as a group. For a
//! certificate with several organizations we let rcgen build it with the
//! first O, then replace the subject with one carrying all of them and sign
//! the new TBSCertificate with the CA key (same algorithm, same extensions).

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// One DER element: its tag, the whole encoding, and its content.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Splits one element off the front of `buf`; `None` if malformed.
fn read_tlv(buf: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        // Certificates are far below 4 GiB; longer forms are malformed here.
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in buf.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    let whole = buf.get(..end)?;
    let tlv = Tlv {
        tag,
        whole,
        content: &whole[hdr..],
    };
    Some((tlv, &buf[end..]))
}

fn write_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn attribute(oid: &[u8], value: &str) -> Vec<u8> {
    let mut atv = write_tlv(TAG_OID, oid);
    atv.extend(write_tlv(TAG_UTF8, value.as_bytes()));
    // Each attribute in its own RDN, as openssl and Go's pkix.Name write them.
    write_tlv(TAG_SET, &write_tlv(TAG_SEQUENCE, &atv))
}

/// DER Name: O=... (each), CN=cn — the order kubeadm's certificates use.
pub(crate) fn subject_name(cn: &str, orgs: &[&str]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for o in orgs {
        rdns.extend(attribute(OID_O, o));
    }
    rdns.extend(attribute(OID_CN, cn));
    write_tlv(TAG_SEQUENCE, &rdns)
}

/// Returns `cert` with its subject replaced by `subject` and re-signed by `sign`.
/// `None` if the certificate is not shaped as rcgen writes it.
pub(crate) fn replace_subject<E>(
    cert: &[u8],
    subject: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Option<Result<Vec<u8>, E>> {
    let (cert_tlv, rest) = read_tlv(cert)?;
    if cert_tlv.tag != TAG_SEQUENCE || !rest.is_empty() {
        return None;
    }
    let (tbs, after_tbs) = read_tlv(cert_tlv.content)?;
    let (sig_alg, after_alg) = read_tlv(after_tbs)?;
    let (sig, after_sig) = read_tlv(after_alg)?;
    if tbs.tag != TAG_SEQUENCE || sig.tag != TAG_BIT_STRING || !after_sig.is_empty() {
        return None;
    }
    // TBSCertificate: version, serial, signature, issuer, validity, subject, ...
    let mut fields = Vec::new();
    let mut rest = tbs.content;
    while !rest.is_empty() {
        let (field, r) = read_tlv(rest)?;
        fields.push(field);
        rest = r;
    }
    if fields.first()?.tag != TAG_VERSION || fields.get(5)?.tag != TAG_SEQUENCE {
        return None;
    }
    let mut new_tbs_content = Vec::with_capacity(tbs.content.len() + subject.len());
    for (i, field) in fields.iter().enumerate() {
        new_tbs_content.extend_from_slice(if i == 5 { subject } else { field.whole });
    }
    let tbs = write_tlv(TAG_SEQUENCE, &new_tbs_content);
    let signature = match sign(&tbs) {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    // BIT STRING with zero unused bits.
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0);
    bits.extend(signature);
    let mut content = tbs;
    content.extend_from_slice(sig_alg.whole);
    content.extend(write_tlv(TAG_BIT_STRING, &bits));
    Some(Ok(write_tlv(TAG_SEQUENCE, &content)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_round_trip_long_form() {
        let content = vec![7u8; 300];
        let enc = write_tlv(TAG_SEQUENCE, &content);
        assert_eq!(&enc[..4], &[0x30, 0x82, 0x01, 0x2c]);
        let (tlv, rest) = read_tlv(&enc).expect("parses");
        assert_eq!(
            (tlv.tag, tlv.whole.len(), tlv.content, rest.len()),
            (0x30, enc.len(), &content[..], 0)
        );
    }

    #[test]
    fn truncated_is_none() {
        assert!(read_tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(read_tlv(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_none());
        assert!(read_tlv(&[]).is_none());
    }
}
