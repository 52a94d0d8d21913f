"""Host-side pieces shared by the three reward ops (aggregate_rewards, group_advantages,
rewards_and_advantages): argument marshalling for the C++ and CUDA kernels, and the Triton kernels."""
