//! `HypercallAbi`: a guest's call to the host, independent of how it arrived.

/// The arguments of a hypercall and the results the host gives back.
///
/// As in crosvm: the backend builds it with the call's id, its arguments and the results
/// the guest sees if the handler sets none; the handler reads the arguments and calls
/// [`HypercallAbi::set_results`]; the backend writes the results back into the vcpu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypercallAbi {
    hypercall_id: usize,
    args: [usize; Self::MAX_ARGS],
    arg_count: usize,
    results: [usize; Self::MAX_RESULTS],
    result_count: usize,
}

impl HypercallAbi {
    /// The most arguments a call carries (KVM's `KVM_EXIT_HYPERCALL` has six).
    pub const MAX_ARGS: usize = 6;
    /// The most results a call returns.
    pub const MAX_RESULTS: usize = 4;

    /// A call `hypercall_id(args...)` whose results are `default_results` until the
    /// handler sets others. Extra arguments or results beyond the maxima are dropped.
    pub fn new(hypercall_id: usize, args: &[usize], default_results: &[usize]) -> Self {
        let mut abi = HypercallAbi {
            hypercall_id,
            args: [0; Self::MAX_ARGS],
            arg_count: args.len().min(Self::MAX_ARGS),
            results: [0; Self::MAX_RESULTS],
            result_count: default_results.len().min(Self::MAX_RESULTS),
        };
        abi.args[..abi.arg_count].copy_from_slice(&args[..abi.arg_count]);
        abi.results[..abi.result_count].copy_from_slice(&default_results[..abi.result_count]);
        abi
    }

    /// The call's id.
    pub fn hypercall_id(&self) -> usize {
        self.hypercall_id
    }

    /// Argument `index`, or `None` past the last one.
    pub fn get_argument(&self, index: usize) -> Option<&usize> {
        self.args[..self.arg_count].get(index)
    }

    /// All arguments.
    pub fn args(&self) -> &[usize] {
        &self.args[..self.arg_count]
    }

    /// The results the guest will see.
    pub fn get_results(&self) -> &[usize] {
        &self.results[..self.result_count]
    }

    /// Sets the first `results.len()` results (at most [`Self::MAX_RESULTS`]); the others
    /// keep their defaults.
    pub fn set_results(&mut self, results: &[usize]) {
        let n = results.len().min(Self::MAX_RESULTS);
        self.results[..n].copy_from_slice(&results[..n]);
        self.result_count = self.result_count.max(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_until_set() {
        let mut abi = HypercallAbi::new(7, &[1, 2, 3], &[usize::MAX, 0, 0, 0]);
        assert_eq!(abi.hypercall_id(), 7);
        assert_eq!(abi.get_argument(2), Some(&3));
        assert_eq!(abi.get_argument(3), None);
        abi.set_results(&[42]);
        assert_eq!(abi.get_results(), &[42, 0, 0, 0]);
    }
}
