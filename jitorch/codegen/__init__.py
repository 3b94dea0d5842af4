"""Code generation: fused groups to loop nests to LLVM IR to machine code, and the runtime that calls it."""
