"""The pad: draw a digit with the mouse and watch the network read it while you draw.

    python -m pad          (or pynn-pad)

pad.state holds the drawing, its ink and the network's answer, and teaches the network, all
without a window (and without pyglet); pad.window is the pyglet window that shows a state and
feeds it the mouse and the keys; pad.demo scripts the drawing of each digit; pad.bench times a
drag event's way to the bars; pad.display starts a virtual X server where there is no display.
"""
