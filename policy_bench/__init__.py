"""policy-bench: does augmented data make a policy work in scenes it never saw?

A closed-loop benchmark that uses oxe-augment only as a user would: demonstrations from a
scripted expert in pybullet are written as an RLDS dataset with exact robot and object
masks, augmented by a real ``oxe-augment run`` of each recipe, read back with
``tfds.builder_from_directory`` and used to train a small behaviour-cloning policy, which
is then rolled out in unseen test scenes. See docs/policy_bench.md.
"""
