"""The Apache Beam adapter around Minimeter's core (``minimeter run``)."""
