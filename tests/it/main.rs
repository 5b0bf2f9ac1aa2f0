mod sandbox_conformance;
