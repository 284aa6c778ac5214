"""forumtranslate: Japanese→English translation, alignment and scoring for forum remarks.

Importing the package is cheap: no model library is imported until a model is used.
"""

__version__ = "0.1.0"
