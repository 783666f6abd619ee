//! The spans of the next datagram, already encoded, filled by exact size: a datagram made
//! from a full batch and the longest head stays within the agent's packet size.

use crate::jaeger_thrift;

pub(super) struct Batch {
    /// What the spans of one datagram may take.
    budget: usize,
    /// The encoded spans, back to back, and their count.
    spans: Vec<u8>,
    count: usize,
}

impl Batch {
    /// A batch for datagrams of at most `max_packet` bytes whose head (`jaeger_thrift::batch_head`)
    /// is at most `longest_head` bytes.
    pub(super) fn new(max_packet: usize, longest_head: usize) -> Batch {
        Batch {
            budget: max_packet.saturating_sub(longest_head + jaeger_thrift::TAIL_MAX),
            spans: Vec::new(),
            count: 0,
        }
    }

    /// Whether a span of `size` encoded bytes fits in a datagram at all, alone.
    pub(super) fn holds(&self, size: usize) -> bool {
        size <= self.budget
    }

    /// Whether a span of `size` encoded bytes fits beside those already here.
    pub(super) fn fits(&self, size: usize) -> bool {
        self.spans.len() + size <= self.budget
    }

    /// Adds an encoded span, which must fit.
    pub(super) fn push(&mut self, span: &[u8]) {
        debug_assert!(self.fits(span.len()));
        self.spans.extend_from_slice(span);
        self.count += 1;
    }

    /// The number of spans here.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn clear(&mut self) {
        self.spans.clear();
        self.count = 0;
    }

    /// Writes the datagram of these spans behind `head` into `out`.
    pub(super) fn datagram(&self, out: &mut Vec<u8>, head: &[u8]) {
        jaeger_thrift::datagram(out, head, self.count, &self.spans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_makes_a_datagram_of_at_most_the_packet_size() {
        let (max_packet, head) = (1000, vec![7u8; 100]);
        let mut batch = Batch::new(max_packet, head.len());
        let budget = max_packet - head.len() - jaeger_thrift::TAIL_MAX;
        assert!(batch.holds(budget) && !batch.holds(budget + 1));
        // 20 spans of 43 bytes, then one of what is left exactly (more than 15 spans: the
        // list header is two bytes).
        for _ in 0..20 {
            assert!(batch.fits(43));
            batch.push(&[1; 43]);
        }
        let rest = budget - 20 * 43;
        assert!(batch.fits(rest) && !batch.fits(rest + 1));
        batch.push(&vec![2; rest]);
        assert!(!batch.fits(1), "full to the byte");
        assert_eq!(batch.len(), 21);
        let mut datagram = Vec::new();
        batch.datagram(&mut datagram, &head);
        // The head, the list header (0xf0 | STRUCT, then the count), the spans, two stops.
        assert_eq!(datagram[..100], head[..]);
        assert_eq!(datagram[100..102], [0xfc, 21]);
        assert_eq!(datagram.len(), 100 + 2 + budget + 2);
        assert!(datagram.len() <= max_packet);
        assert_eq!(datagram[datagram.len() - 2..], [0, 0]);
        batch.clear();
        assert_eq!(batch.len(), 0);
        assert!(batch.fits(budget));
    }

    #[test]
    fn a_head_longer_than_the_packet_leaves_no_room() {
        let batch = Batch::new(100, 200);
        assert!(batch.holds(0) && !batch.holds(1));
    }
}
