using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>
/// One place in a module that holds a reference to a child module and that the module's <c>forward</c> code reads: an
/// instance field of a user module (any visibility, declared in the class or a base class), an element of a
/// <c>ModuleList&lt;T&gt;</c>, or a value of a <c>ModuleDict&lt;T&gt;</c>.
/// </summary>
internal abstract class ModuleSlot
{
    private ModuleSlot(nn.Module owner) => Owner = owner;

    /// <summary>The module whose field or container element this is.</summary>
    public nn.Module Owner { get; }

    /// <summary>The declared type of the slot: what it can hold.</summary>
    public abstract Type SlotType { get; }

    /// <summary>Where the slot is, for messages ("Net.conv1", "ModuleList[2]").</summary>
    public abstract string Describe();

    /// <summary>What the slot holds now.</summary>
    public abstract object? Get();

    /// <summary>Puts <paramref name="value"/> into the slot, leaving the owner's registration untouched.</summary>
    public abstract void Set(object value);

    /// <summary>Whether the slot's declared type accepts a <see cref="RecordingWrapper"/>.</summary>
    public bool CanHoldWrapper => SlotType.IsAssignableFrom(typeof(RecordingWrapper));

    private static readonly Assembly TorchSharpAssembly = typeof(nn.Module).Assembly;

    // nn.Module's flag that RegisterComponents() ran (it then never scans the fields again). Looked up by name: a
    // TorchSharp version without it makes every field slot rely on the name check in IsRegistrationSafe alone.
    private static readonly FieldInfo? RegisteredFlag =
        typeof(nn.Module).GetField("_areComponentsRegistered", BindingFlags.Instance | BindingFlags.NonPublic);

    /// <summary>
    /// Every slot of every module of <paramref name="model"/> (the model itself included) that holds one of
    /// <paramref name="targets"/>, by target. Modules of TorchSharp's own types other than ModuleList/ModuleDict are
    /// not searched: Sequential and the built-in layers call their children with <c>call()</c> or natively.
    /// </summary>
    public static Dictionary<nn.Module, List<ModuleSlot>> Find(nn.Module model, IReadOnlyCollection<nn.Module> targets)
    {
        var wanted = new HashSet<nn.Module>(targets, ReferenceEqualityComparer.Instance);
        var found = new Dictionary<nn.Module, List<ModuleSlot>>(ReferenceEqualityComparer.Instance);
        var owners = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance) { model };
        foreach (var m in model.modules()) owners.Add(m);

        foreach (var owner in owners)
        {
            foreach (var slot in SlotsOf(owner))
            {
                // A slot may hold another monitor's wrapper of the layer: it is the layer's slot all the same.
                if (slot.Get() is nn.Module value && Unwrap(value) is var held && wanted.Contains(held))
                {
                    if (!found.TryGetValue(held, out var list)) found[held] = list = [];
                    list.Add(slot);
                }
            }
        }
        return found;
    }

    /// <summary>The layer behind a chain of wrappers (the module itself when it is not a wrapper).</summary>
    public static nn.Module Unwrap(nn.Module module)
    {
        while (module is RecordingWrapper w) module = w.Inner;
        return module;
    }

    private static IEnumerable<ModuleSlot> SlotsOf(nn.Module owner)
    {
        var type = owner.GetType();
        if (FindGeneric(type, typeof(ModuleList<>)) is { } listType)
        {
            var item = listType.GetProperty("Item", listType.GetGenericArguments()[0], [typeof(int)])!;
            int count = (int)listType.GetProperty("Count")!.GetValue(owner)!;
            for (int i = 0; i < count; i++) yield return new ListSlot(owner, item, i);
            yield break;
        }
        if (FindGeneric(type, typeof(ModuleDict<>)) is { } dictType)
        {
            var t = dictType.GetGenericArguments()[0];
            var byKey = dictType.GetProperty("Item", t, [typeof(string)])!;
            var keys = (ICollection<string>)dictType.GetProperty("Keys")!.GetValue(owner)!;
            foreach (var key in keys.ToList()) yield return new DictSlot(owner, byKey, key);
            yield break;
        }

        // A user module (or a user subclass of a TorchSharp type): its own fields and those of its user base classes.
        for (var t = type; t is not null && t != typeof(object) && t.Assembly != TorchSharpAssembly; t = t.BaseType)
        {
            foreach (var field in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (typeof(nn.Module).IsAssignableFrom(field.FieldType) || field.FieldType.IsAssignableFrom(typeof(nn.Module)) ||
                    field.FieldType.IsInterface)
                {
                    yield return new FieldSlot(owner, field);
                }
            }
        }
    }

    private static Type? FindGeneric(Type type, Type definition)
    {
        for (var t = type; t is not null; t = t.BaseType)
        {
            if (t.IsGenericType && t.GetGenericTypeDefinition() == definition) return t;
        }
        return null;
    }

    /// <summary>
    /// Whether replacing the slot's value can never reach the owner's registration. TorchSharp's RegisterComponents()
    /// scans the fields once and then never again; a field of a module that registered its children by hand (without
    /// RegisterComponents) could still be scanned later, when the module is registered into a new parent, and would then
    /// register whatever it holds, unless a component of the same name is registered already.
    /// </summary>
    public virtual bool IsRegistrationSafe(out string? reason)
    {
        reason = null;
        return true;
    }

    private sealed class FieldSlot(nn.Module owner, FieldInfo info) : ModuleSlot(owner)
    {
        public override Type SlotType => info.FieldType;

        public override string Describe() => $"{info.DeclaringType?.Name}.{info.Name}";

        public override object? Get() => info.GetValue(Owner);

        public override void Set(object value) => info.SetValue(Owner, value);

        public override bool IsRegistrationSafe(out string? reason)
        {
            reason = null;
            if (RegisteredFlag?.GetValue(Owner) is true) return true;
            var name = info.ComponentName();
            if (Owner.named_children().Any(c => c.name == name) || Owner.named_parameters(recurse: false).Any(p => p.name == name) ||
                Owner.named_buffers(recurse: false).Any(b => b.name == name))
            {
                return true;
            }
            reason = $"{Owner.GetType().Name} registered its children without RegisterComponents(), so a later RegisterComponents() " +
                $"would register whatever field '{info.Name}' holds";
            return false;
        }
    }

    private sealed class ListSlot(nn.Module owner, PropertyInfo item, int index) : ModuleSlot(owner)
    {
        public override Type SlotType => item.PropertyType;

        public override string Describe() => $"{Owner.GetType().Name.Split('`')[0]}[{index}]";

        public override object? Get() => item.GetValue(Owner, [index]);

        // ModuleList's indexer replaces the list element only; the registered child stays the original.
        public override void Set(object value) => item.SetValue(Owner, value, [index]);
    }

    private sealed class DictSlot(nn.Module owner, PropertyInfo item, string key) : ModuleSlot(owner)
    {
        public override Type SlotType => item.PropertyType;

        public override string Describe() => $"{Owner.GetType().Name.Split('`')[0]}[\"{key}\"]";

        public override object? Get() => item.GetValue(Owner, [key]);

        // ModuleDict's indexer replaces the dictionary and list entries only; the registered child stays the original.
        public override void Set(object value) => item.SetValue(Owner, value, [key]);
    }
}
