"""The network: Wan-compatible DiT, token layout and mask, flow matching, the policy and its samplers."""
