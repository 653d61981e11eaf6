"""The bridge: Salesforce Case events become CCAI Platform SMS, and the outcome lands on the Case."""

__version__ = "0.1.0"
