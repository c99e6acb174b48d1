namespace CovariateShift.Training.Training;

/// <summary>Classification quality of a model on a data set (evaluation mode, no gradients).</summary>
/// <param name="Step">Training steps completed when the evaluation ran (0 for a stand-alone evaluation).</param>
/// <param name="Accuracy">Fraction of examples whose largest logit is the label, in [0, 1].</param>
/// <param name="Loss">Mean cross-entropy over the examples.</param>
/// <param name="Examples">Number of examples evaluated.</param>
public sealed record EvaluationResult(
    int Step,
    double Accuracy,
    double Loss,
    long Examples);
