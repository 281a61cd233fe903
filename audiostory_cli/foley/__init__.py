"""The procedural foley world: a bank of synthetic sound-event classes, stories made of them, and an independent
event classifier used to check renders. Pure numpy/scipy; nothing here downloads anything."""
