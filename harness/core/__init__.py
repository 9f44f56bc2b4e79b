"""The core contract: what runs (Case), which maths it must reproduce (Family), how an
implementation is described (ImplSpec, Capabilities), how it is called (the forward contract and
the phase step), and the reference it is compared with (Subject). Everything else in the harness
builds on this package; it imports nothing from the rest of the harness."""
